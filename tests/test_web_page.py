"""The web page in a real headless browser (Debian chromium + chromedriver, driven by Selenium)."""

import shutil
import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def server(live_server):
    return live_server


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromedriver are needed (apt-get install chromium chromium-driver; .ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def wait_for(driver, css, timeout=20):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, css)))


def test_quote_flow(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    browser.find_element(By.ID, "text").send_keys("We condemn the shelling of the grain terminal.")
    browser.find_element(By.ID, "target").send_keys("the shelling")
    browser.find_element(By.ID, "submit").click()
    cards = wait_for(browser, "[data-testid=result]")
    assert len(cards) == 1
    stance = browser.find_element(By.CSS_SELECTOR, "[data-testid=stance-label]").text
    tone = browser.find_element(By.CSS_SELECTOR, "[data-testid=tone-label]").text
    assert stance in {"support", "oppose", "neutral"}
    assert tone in {"cooperative", "neutral", "concerned", "critical", "hostile"}
    assert len(browser.find_elements(By.CSS_SELECTOR, "[role=meter]")) == 8  # 3 stance + 5 tone bars
    assert browser.find_element(By.CSS_SELECTOR, "[data-testid=tone_score]").text
    assert "target: the shelling" in cards[0].text


def test_article_flow(server, browser):
    from selenium.webdriver.common.by import By

    article = (
        "Foreign Minister Amara Diallo said on Monday that the border would stay closed.\n\n"
        "\u201cWe will not accept this,\u201d Diallo told reporters. \"Our patience has limits.\""
    )
    browser.get(server + "/")
    browser.find_element(By.CSS_SELECTOR, "input[value=article]").click()
    box = browser.find_element(By.ID, "text")
    box.clear()
    browser.execute_script("arguments[0].value = arguments[1];", box, article)
    browser.find_element(By.ID, "submit").click()
    cards = wait_for(browser, "[data-testid=result]", timeout=60)
    assert len(cards) >= 2
    speakers = [c.find_element(By.CSS_SELECTOR, "[data-testid=speaker]").text for c in cards]
    assert all("Amara Diallo" in s for s in speakers), speakers
    assert "statement(s) found" in browser.find_element(By.ID, "status").text


def test_error_is_shown(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    browser.find_element(By.ID, "submit").click()  # empty text: the browser's own `required` check blocks it
    assert browser.find_elements(By.CSS_SELECTOR, "[data-testid=result]") == []
