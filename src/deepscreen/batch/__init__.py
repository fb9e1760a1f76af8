"""Batch screening of large collections: `deepscreen batch INPUT --out DIR`.

Every file goes through the one scan core (`deepscreen.scan.Scanner.scan`); this package only decides which files,
runs them in worker processes (a local process pool or Ray Data actors), and keeps what they return safely on disk:

inputs.py   INPUT (folder, list of paths, CSV/Parquet manifest) -> items (path, optional real/fake label)
rows.py     Verdict -> one flat results row, the fixed Parquet schema, the key of the models and settings used
worker.py   what runs inside a worker: one Scanner per process, loaded once; scan one item -> row
engines.py  local (process pool) and ray (Ray Data): items in, rows out, in completion order
store.py    parts written atomically, the done index for resuming, compaction into results.parquet
metrics.py  AUC, EER, log-loss, ROC and reliability bins in numpy (the batch never imports deepscreen.training)
report.py   summary.json, the printed table, ROC curve and reliability diagram PNGs
run.py      the driver: what is left to do, progress bar, writing, the exit code
cli.py      the `deepscreen batch` command (registered in deepscreen/cli.py; imports the rest only when run)

From Python: `from deepscreen.batch.run import BatchOptions, run_batch`.
"""
