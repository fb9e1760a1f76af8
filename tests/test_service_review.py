"""The review page in a real headless browser (Debian's chromium + chromedriver, driven by selenium): log in with
a review key, open a quarantined item from the queue, mark it, and find the decision in the audit log, on the page
and in the CSV export. Also: forms refuse a missing CSRF token, and the database refuses edits to the audit log."""

from __future__ import annotations

import re
import shutil
import sqlite3

import httpx
import pytest

from service_server import Server, client, face_pair, make_key, review_login, wait_done


def _driver():
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        pytest.skip("chromium and chromedriver are not installed (scripts/setup.sh installs them as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,900"):
        opts.add_argument(arg)
    # An explicit chromedriver path: selenium never tries to download a browser or a driver.
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    base = tmp_path_factory.mktemp("review")
    data = base / "data"
    keys = {r: make_key(data, r, name=f"{r} person") for r in ("submit", "review")}
    server = Server(data, "--workers", "1").start()
    server.keys = keys
    faces = face_pair(base)
    c = client(server, keys["submit"])
    server.fake = wait_done(c, c.post("/v1/scans", files={"file": ("suspect.jpg", faces["fake"].read_bytes())})
                            .json()["id"])
    server.real = wait_done(c, c.post("/v1/scans", files={"file": ("holiday.jpg", faces["real"].read_bytes())})
                            .json()["id"])
    assert server.fake["route"] == "quarantine" and server.real["route"] == "pass"
    yield server
    server.stop()


def test_reviewer_marks_a_quarantined_item_in_the_browser(svc):
    from selenium.webdriver.common.by import By
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _driver()
    try:
        browser.get(svc.url + "/review")
        assert browser.current_url.endswith("/review/login")
        browser.find_element(By.ID, "key").send_keys(svc.keys["review"])
        browser.find_element(By.ID, "login").click()
        WebDriverWait(browser, 10, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda b: b.current_url.endswith("/review"), browser.page_source[:2000])
        rows = browser.find_elements(By.CSS_SELECTOR, "tr.item")
        ids = [r.get_attribute("data-id") for r in rows]
        assert svc.fake["id"] in ids and svc.real["id"] not in ids  # passed items never enter the queue
        row = rows[ids.index(svc.fake["id"])]
        assert "quarantine" in row.text and "%" in row.text and "suspect.jpg" in row.text
        thumb = row.find_element(By.CSS_SELECTOR, "img.thumb")
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", thumb) > 0
        row.find_element(By.LINK_TEXT, "suspect.jpg").click()
        WebDriverWait(browser, 10, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda b: f"/review/scans/{svc.fake['id']}" in b.current_url)

        assert browser.find_element(By.TAG_NAME, "h1").text == "suspect.jpg"
        browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe[title=report]"))
        assert "manipulated" in browser.find_element(By.TAG_NAME, "body").text.lower()
        browser.switch_to.default_content()
        browser.find_element(By.ID, "comment").send_keys("blend seam along the jaw")
        browser.find_element(By.ID, "decide-confirmed_fake").click()
        # The decision posts and redirects back to this page: wait for the new one, not the one just left. Read in
        # one script call: an element found on the old page and read on the new one fails (chromedriver: "Node with
        # given id does not belong to the document").
        history_text = "const h = document.getElementById('history'); return h ? h.innerText : '';"
        WebDriverWait(browser, 10).until(
            lambda b: "confirmed_fake" in b.execute_script(history_text), "decision not shown")
        history = browser.find_element(By.ID, "history").text
        assert "confirmed_fake" in history and "pending → confirmed_fake" in history
        assert "blend seam along the jaw" in history and "review person" in history
        browser.get(svc.url + "/review/audit")
        assert "blend seam along the jaw" in browser.find_element(By.ID, "audit").text
        browser.get(svc.url + "/review")
        ids = [r.get_attribute("data-id") for r in browser.find_elements(By.CSS_SELECTOR, "tr.item")]
        assert svc.fake["id"] not in ids  # decided: out of the open queue
    finally:
        browser.quit()

    r = client(svc, svc.keys["review"]).get("/v1/audit", params={"format": "csv"})
    lines = r.text.strip().splitlines()
    assert lines[0] == "seq,at,actor,scan_id,action,previous_state,new_state,comment"
    assert any(svc.fake["id"] in ln and "confirmed_fake,pending,confirmed_fake" in ln for ln in lines[1:])
    state = client(svc, svc.keys["review"]).get(f"/v1/scans/{svc.fake['id']}").json()["review_state"]
    assert state == "confirmed_fake"


def test_every_review_page_sends_strangers_to_the_login(svc):
    """Without a reviewer session each page and export answers 303 to the login form, and never runs the route."""
    c = httpx.Client(base_url=svc.url)
    scan = svc.fake["id"]
    for method, url in [("GET", "/review"), ("GET", f"/review/scans/{scan}"), ("GET", f"/review/scans/{scan}/report"),
                        ("GET", f"/review/scans/{scan}/thumb"), ("GET", "/review/audit"),
                        ("GET", "/review/audit.csv"), ("POST", f"/review/scans/{scan}/decision")]:
        r = c.request(method, url, data={"decision": "escalate"} if method == "POST" else None)
        assert (r.status_code, r.headers.get("location")) == (303, "/review/login"), url
    submitter = httpx.Client(base_url=svc.url)
    review_login(submitter, svc.keys["submit"])  # a key without the review role gets no session
    assert submitter.get("/review/audit").status_code == 303


def test_login_and_decisions_need_csrf_tokens(svc):
    c = httpx.Client(base_url=svc.url)
    r = c.post("/review/login", data={"key": svc.keys["review"]})  # no form token: a cross-site login attempt
    assert r.status_code == 403 and "expired" in r.text
    assert review_login(c, svc.keys["review"]).status_code == 303
    page = c.get(f"/review/scans/{svc.fake['id']}").text
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    url = f"/review/scans/{svc.fake['id']}/decision"
    assert c.post(url, data={"decision": "escalate"}).status_code == 403
    assert c.post(url, data={"decision": "escalate", "csrf": "0" * 64}).status_code == 403
    other = httpx.Client(base_url=svc.url)  # another session: the token is bound to the first
    review_login(other, svc.keys["review"])
    assert other.post(url, data={"decision": "escalate", "csrf": token}).status_code == 403
    assert c.post(url, data={"decision": "nonsense", "csrf": token}).status_code == 400
    assert c.post(url, data={"decision": "escalate", "csrf": token, "comment": "second look"}).status_code == 303
    assert review_login(httpx.Client(base_url=svc.url), "wrong").status_code == 401


def test_audit_log_is_append_only_in_the_database(svc):
    db = sqlite3.connect(svc.data_dir / "deepscreen.db")
    try:
        db.execute("INSERT INTO audit_log (at, actor, scan_id, action) VALUES (0, 'test', 'x', 'note')")
        db.commit()  # appending is allowed
        for sql in ("UPDATE audit_log SET comment = 'edited'", "DELETE FROM audit_log"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                db.execute(sql)
    finally:
        db.close()
