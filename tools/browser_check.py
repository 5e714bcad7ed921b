#!/usr/bin/env python3
"""Check the notebooks' widgets in a real JupyterLab, in headless Chromium, as an instructor uses them.

    python tools/browser_check.py [06 02 ...]     (`make browser-check`; default: every notebook with a widget)

A copy of each notebook is opened in JupyterLab (autosave off: the repository's notebooks are never
written), every cell is run with ARIA_SPEED=fast, then the first control of each `interact` widget is
moved, and each clickable image (ipyevents) is clicked; the widget's output must change. Screenshots (before and after each move), the JupyterLab log
and report.json go to build/browser/. Needs Debian's chromium (/usr/bin/chromium) and
`pip install playwright` (no browser download); not part of CI.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from aria_utils.runner import notebook_paths  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
LAB_SETTINGS = {  # JupyterLab user settings for the check: every cell in the DOM, no autosave, no news
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


def with_widgets(selection: list[str]) -> list[Path]:
    """The selected notebooks (default: all) with a widget demo (`interact`, `try_it`, a click demo)."""
    return [p for p in notebook_paths(selection or None)
            if any(call in p.read_text() for call in ("interact(", "try_it(", "click_demo("))]


def start_lab(work: Path, out: Path) -> tuple[subprocess.Popen, str]:
    """JupyterLab on a free local port, serving `work`, kernels with ARIA_SPEED=fast; return it and a URL
    template with `{path}` (and the token) in it."""
    settings = out / "lab-settings"
    for name, value in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(value))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(8)
    env = {k: v for k, v in os.environ.items() if k != "ARIA_HEADLESS"}  # a real frontend: live widgets
    env.update(ARIA_SPEED="fast", ARIA_BUILD=str(out / "build"), JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(out / "lab-workspaces"),
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    lab = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}"],
        env=env, stdout=(out / "lab.log").open("w"), stderr=subprocess.STDOUT)
    for _ in range(120):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return lab, f"http://127.0.0.1:{port}/{{path}}?token={token}"
        except OSError:
            time.sleep(1)
    lab.terminate()
    raise SystemExit(f"JupyterLab did not start; see {out / 'lab.log'}")


def shut_down_kernels(url: str) -> None:
    """Stop every kernel of the JupyterLab server (the next notebook gets the CPU to itself)."""
    import urllib.request

    for k in json.loads(urllib.request.urlopen(url.format(path="api/kernels"), timeout=30).read()):
        req = urllib.request.Request(url.format(path=f"api/kernels/{k['id']}"), method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()


def run_all(page, timeout: float) -> float:
    """Start the kernel, run every cell from the Run menu, wait until the kernel has been idle a few seconds
    with no cell queued; return the seconds it took."""
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    try:  # JupyterLab may ask which kernel to start
        page.locator(".jp-Dialog button", has_text="Select").first.click(timeout=15_000)
    except Exception:
        pass
    idle = page.locator(".jp-StatusBar-Item", has_text="| Idle")
    idle.first.wait_for(timeout=120_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    start, quiet = time.time(), 0
    while time.time() - start < timeout:
        page.wait_for_timeout(1000)
        running = page.locator(".jp-InputPrompt", has_text="[*]").count() or not idle.count()
        quiet = 0 if running else quiet + 1
        if quiet >= 3:
            return time.time() - start - 3
    raise TimeoutError(f"cells still running after {timeout:.0f} s")


def move_first_control(widget) -> str:
    """Move the first control of an `interact` widget one step; describe what was done."""
    control = widget.locator(":scope > div").first
    kind = control.get_attribute("class") or ""
    label = control.locator(".widget-label").first.inner_text() if control.locator(".widget-label").count() else "?"
    if "widget-slider" in kind:
        before = control.locator(".widget-readout").first.inner_text()
        control.locator(".noUi-handle").first.focus()
        control.locator(".noUi-handle").first.press("ArrowRight")
        return f"slider {label!r}: {before} -> {control.locator('.widget-readout').first.inner_text()}"
    if "widget-dropdown" in kind:
        select = control.locator("select").first
        options = select.locator("option").all_inner_texts()
        now = select.evaluate("s => s.selectedIndex")
        select.select_option(index=(now + 1) % len(options))
        return f"dropdown {label!r}: {options[now]!r} -> {options[(now + 1) % len(options)]!r}"
    if "widget-checkbox" in kind:
        control.locator("input").first.click()
        return f"checkbox {label!r}: toggled"
    text = control.locator("input").first
    value = text.input_value()
    text.fill(str(int(value) + 1) if value.lstrip("-").isdigit() else value + "x")
    text.press("Enter")
    return f"text {label!r}: {value!r} -> {text.input_value()!r}"


def wait_for_change(page, output, before: str, wait: float) -> tuple[bool, float]:
    """Wait up to `wait` seconds for `output` to differ from `before` with no cell running; (changed, seconds)."""
    start, changed = time.time(), False
    while time.time() - start < wait and not changed:
        page.wait_for_timeout(500)
        changed = output.inner_html() != before and not page.locator(".jp-InputPrompt", has_text="[*]").count()
    return changed, round(time.time() - start, 1)


def act_and_watch(page, frame, output, act, shots: Path, wait: float) -> tuple[object, bool, float]:
    """Screenshot `frame`, run `act()`, wait for `output` to change, let the figure finish drawing, screenshot
    again (`<shots>.before.png`, `<shots>.after.png`); return (what `act` returned, changed, seconds)."""
    before = output.inner_html()
    frame.screenshot(path=f"{shots}.before.png")
    done = act()
    changed, seconds = wait_for_change(page, output, before, wait)
    page.wait_for_timeout(1000)
    frame.screenshot(path=f"{shots}.after.png")
    return done, changed, seconds


def check_widgets(page, stem: str, out: Path, wait: float) -> list[dict]:
    """Move each widget's first control; its output must change within `wait` seconds."""
    results = []
    widgets = page.locator(".widget-interact")
    for i in range(widgets.count()):
        w = widgets.nth(i)
        w.scroll_into_view_if_needed()
        cell = w.locator("xpath=ancestor::div[contains(concat(' ', @class, ' '), ' jp-CodeCell ')]").first
        output = w.locator(".widget-output").first
        move, changed, seconds = act_and_watch(page, cell, output, lambda: move_first_control(w),
                                               out / f"{stem}.widget{i + 1}", wait)
        results.append({"notebook": stem, "widget": i + 1, "moved": move, "output_changed": changed,
                        "seconds": seconds})
        print(f"[browser] {stem} widget {i + 1}: {move}; output {'changed' if changed else 'did NOT change'}")
    return results


def check_clicks(page, stem: str, out: Path, wait: float) -> list[dict]:
    """Click each clickable image (an ipyevents-watched `widgets.Image` beside an output); the output must change."""
    results = []
    boxes = page.locator(".widget-vbox:has(> .widget-image):has(> .widget-output)")
    for i in range(boxes.count()):
        box = boxes.nth(i)
        box.scroll_into_view_if_needed()
        image, output = box.locator("> .widget-image").first, box.locator("> .widget-output").first
        size = image.bounding_box()
        _, changed, seconds = act_and_watch(
            page, box, output, lambda: image.click(position={"x": 0.3 * size["width"], "y": 0.3 * size["height"]}),
            out / f"{stem}.click{i + 1}", wait)
        results.append({"notebook": stem, "widget": f"click {i + 1}", "moved": "clicked the image at (0.3, 0.3)",
                        "output_changed": changed, "seconds": seconds})
        print(f"[browser] {stem} clickable image {i + 1}: output {'changed' if changed else 'did NOT change'}")
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="numbers (06) or paths; default: every notebook with a widget")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "browser")
    ap.add_argument("--timeout", type=float, default=900, help="seconds to run all cells of one notebook")
    ap.add_argument("--wait", type=float, default=60, help="seconds for a widget's output to change")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    paths = with_widgets(args.notebooks)
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for p in paths:
        shutil.copy(p, work / p.name)
    lab, url = start_lab(work, args.out)
    report = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            for path in paths:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                # a workspace of its own, reset: only this notebook's tab is open
                page.goto(url.format(path=f"lab/workspaces/{path.stem}/tree/{path.name}") + "&reset", timeout=120_000)
                entry = {"notebook": path.stem}
                try:
                    entry["run_s"] = round(run_all(page, args.timeout), 1)
                    stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
                    entry["stderr"] = [t[:300] for t in stderr.all_inner_texts()]
                    page.screenshot(path=str(args.out / f"{path.stem}.after_run.png"))
                    entry["widgets"] = (check_widgets(page, path.stem, args.out, args.wait)
                                        + check_clicks(page, path.stem, args.out, args.wait))
                except Exception as e:  # a notebook that fails is reported, the others still run
                    entry["failure"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                    page.screenshot(path=str(args.out / f"{path.stem}.failure.png"))
                print(f"[browser] {path.stem}: ran in {entry.get('run_s', '?')} s, "
                      f"{len(entry.get('stderr', []))} stderr outputs{', ' + entry['failure'] if 'failure' in entry else ''}")
                report.append(entry)
                page.close()
                shut_down_kernels(url)
            browser.close()
    finally:
        lab.terminate()
        lab.wait(30)
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    ok = bool(report) and all("failure" not in e and not e["stderr"] and e["widgets"] and all(w["output_changed"] for w in e["widgets"])
             for e in report)
    print(f"[browser] {'every widget redrew its output' if ok else 'FAILED'}; screenshots in {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
