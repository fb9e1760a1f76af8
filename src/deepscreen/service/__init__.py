"""The prescreening service (issue #34): an HTTP API that scores incoming media with the scan core, routes each
verdict (pass / review / quarantine / reject), keeps a durable job table, and a review page for people.

Modules: settings (flags, env, TOML), store (tables, engine, migrations), keys (API keys), uploads (streamed,
content-addressed storage), policy (verdict -> route), jobs (claiming and finishing), worker (a process that loads
the models once), supervisor (starts and watches workers), callbacks, metrics, api, review, app, cli.
It calls only `deepscreen.scan.Scanner` and `deepscreen.report`; never synthesis or training.
"""
