"""`axiom land` on awkward inputs: damaged UID elements, dangling links, loops, links
leading outside, named pipes (never a hang); every unlandable input listed with its reason,
exit codes 0 / 1 / 2, the original path in the ledger."""
from __future__ import annotations

import os
import threading
from pathlib import Path

from axiom_dagster.cli import main as axiom
from axiom_dagster.store.state import StateStore
from tests.helpers import make_config, small_archive, write_config_file
from tests.realworld.damage import with_vr


def _config(tmp_path):
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    return config, str(write_config_file(config, tmp_path / "axiom.yaml"))


def _land(config_file, *args):
    """Run `axiom land` on a thread with a deadline: a hang fails the test, not the suite."""
    out = {}
    worker = threading.Thread(target=lambda: out.setdefault("code", axiom(["land", *args, "--config", config_file])),
                              daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "axiom land hung"
    return out["code"]


def test_awkward_inputs_are_reported_never_hang(tmp_path, capsys):
    config, config_file = _config(tmp_path)
    folder = tmp_path / "in"
    good = small_archive(folder, studies=1, series=1, instances=3)
    (folder / "bad-uid.dcm").write_bytes(with_vr(good[0].read_bytes(), 0x0008, 0x0018, b"XX"))
    os.mkfifo(folder / "pipe.dcm")
    (folder / "dangling.dcm").symlink_to(tmp_path / "nowhere.dcm")
    (folder / "loop").symlink_to(folder / "loop")
    (folder / "inside.dcm").symlink_to(good[1])
    outside = tmp_path / "outside"
    small_archive(outside, studies=1, series=1, instances=2, seed=5)
    (folder / "outside-link").symlink_to(outside)

    assert _land(config_file, str(folder)) == 1
    out = capsys.readouterr().out
    assert "landed 3 instances" in out and "1 links inside the folder skipped" in out
    for name, why in [("bad-uid.dcm", "unreadable DICOM header"), ("pipe.dcm", "not a regular file"),
                      ("dangling.dcm", "dangling symbolic link"), ("loop", "symbolic link loop"),
                      ("outside-link", "symbolic link leading outside the folder: not followed")]:
        assert f"{name}: {why}" in out, (name, out)
    store = StateStore(config.state_store_url)
    rows = store.ledger_after(0, 100)
    assert sorted(Path(r.original_path).name for r in rows) == sorted(p.name for p in good)
    assert len(store.exceptions("landing")) == 5


def test_follow_symlinks_lands_outside_files_and_exit_0(tmp_path, capsys):
    config, config_file = _config(tmp_path)
    folder = tmp_path / "in"
    folder.mkdir()
    outside = small_archive(tmp_path / "outside", studies=1, series=1, instances=2)
    (folder / "linked").symlink_to(tmp_path / "outside")
    assert _land(config_file, str(folder), "--follow-symlinks") == 0
    rows = StateStore(config.state_store_url).ledger_after(0, 10)
    assert len(rows) == len(outside) and all("linked" in r.original_path for r in rows)


def test_not_a_folder_is_exit_2(tmp_path):
    _, config_file = _config(tmp_path)
    assert _land(config_file, str(tmp_path / "missing")) == 2
