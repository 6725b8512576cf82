"""The browser tests' setup (tests/browser.py), without a browser: the SDKs are
pinned exactly, a missing piece skips locally and fails in CI, and the README's
supported-SDKs list names the versions tested."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from tests.browser import SDKS, pinned_sdks, sdk_problem, unavailable
from tests.harness import ROOT


def test_the_sdks_are_pinned_exactly_and_locked() -> None:
    pinned = pinned_sdks()
    assert set(pinned) == {
        "@braze/web-sdk",
        "@segment/analytics-next",
        "@rudderstack/analytics-js",
        "posthog-js",
        "mixpanel-browser",
    }
    lock = json.loads((SDKS / "package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"] == pinned
    for name, version in pinned.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned exactly"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    # the lock names no registry host: `npm ci` takes each package from the one configured
    assert all("resolved" not in entry for entry in lock["packages"].values())


def test_a_missing_or_other_sdk_version_is_reported(tmp_path: Path) -> None:
    assert "@braze/web-sdk" in (sdk_problem(tmp_path) or "")
    for name, version in pinned_sdks().items():
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "package.json").write_text(json.dumps({"version": version}))
    assert sdk_problem(tmp_path) is None
    (tmp_path / "@braze/web-sdk/package.json").write_text(json.dumps({"version": "0.0.1"}))
    assert sdk_problem(tmp_path) == (
        f"npm package @braze/web-sdk is 0.0.1 in {tmp_path}, "
        f"{pinned_sdks()['@braze/web-sdk']} is pinned"
    )


def test_missing_browser_parts_fail_in_ci_and_skip_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="browser tests cannot run in CI: no chromium"):
        unavailable("no chromium")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        unavailable("no chromium")


def test_the_readme_names_the_tested_sdk_versions() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Supported SDKs") :]
    section = section[: section.index("\n## ", 1)]
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())
    sdks = [
        requirement.split("==")
        for requirement in python["project"]["optional-dependencies"]["test"]
        if requirement.startswith(
            ("segment-", "rudder-", "posthog", "amplitude-", "mixpanel", "snowplow-")
        )
    ]
    assert len(sdks) == 6
    assert all(len(pin) == 2 for pin in sdks), "the Python SDKs are pinned exactly"
    for name, version in [*pinned_sdks().items(), *sdks]:
        assert f"`{name}` {version}" in section
