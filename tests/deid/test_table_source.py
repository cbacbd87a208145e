"""The de-identification tables are the whole of PS3.15 Tables E.1-1 and E.3.10-1 of one
edition, generated from the committed machine-readable source, and the update path works."""
from __future__ import annotations

import json

import pytest

from axiom_dagster.deid import SAFE_PRIVATE, SAFE_PRIVATE_EDITION, TABLE, TABLE_EDITION, generate, lookup
from axiom_dagster.deid.table_e1_1 import REPEATING_ROWS


def test_generated_modules_match_the_source():
    assert generate.main(["--check"]) == 0, "run: python -m axiom_dagster.deid.generate"


def test_edition_is_2026d_for_both_tables():
    assert TABLE_EDITION == "DICOM PS3.15 2026d Table E.1-1"
    assert SAFE_PRIVATE_EDITION == "DICOM PS3.15 2026d Table E.3.10-1"


def test_every_source_row_is_in_the_table_with_its_codes():
    edition, rows = generate.load_source("e1_1")
    assert edition == "2026d" and len(rows) == 657
    fields = {source: field for _, source, field in generate.OPTIONS}
    listed = 0
    for row in rows:
        digits = row["tag"][1:5] + row["tag"][6:10]
        if "gggg" in row["tag"]:
            assert row["basic_profile"] == "X" and row["options"] == {"retain_safe_private": "C"}
            continue
        if "x" in digits:
            matches = [r for r in REPEATING_ROWS if r.mask[1] == int(digits.replace("x", "0"), 16)]
            assert len(matches) == 1, row["tag"]
            got = matches[0]
        else:
            got = TABLE[int(digits, 16)]
        listed += 1
        assert got.basic == row["basic_profile"], row["name"]
        assert got.options == {fields[k]: v for k, v in row["options"].items()}, row["name"]
    assert listed == len(TABLE) + len(REPEATING_ROWS) == 656


def test_safe_private_list_is_table_e3_10_1():
    edition, rows = generate.load_source("e3_10_1")
    assert edition == "2026d"
    expected = {(r["private_creator"], int(r["tag"][1:5], 16), int(r["tag"][8:10], 16)) for r in rows}
    assert SAFE_PRIVATE == expected and len(SAFE_PRIVATE) == 479
    assert ("SIEMENS MR HEADER", 0x0019, 0x0C) in SAFE_PRIVATE  # B Value
    assert ("Philips Imaging DD 001", 0x2001, 0x0A) in SAFE_PRIVATE  # published as (2001,xx0a)


@pytest.mark.parametrize("tag, basic, options", [
    (0x00080055, "X", {"retain_device_identity": "C"}),  # Station AE Title
    (0x00080054, "X", {"retain_device_identity": "C"}),  # Retrieve AE Title
    (0x00081000, "X", {"retain_device_identity": "C"}),  # Network ID
    (0x00120022, "X", {}),  # Issuer of Clinical Trial Protocol ID
    (0x00741234, "X", {"retain_device_identity": "C"}),  # Receiving AE
    (0x21000070, "X", {"retain_device_identity": "C"}),  # Originator
    (0x00080106, "D", {"retain_long_full_dates": "K", "retain_long_modified_dates": "C"}),  # Context Group Version
    (0x00189074, "D", {"retain_long_full_dates": "K", "retain_long_modified_dates": "C"}),  # Frame Acquisition DT
    (0x0040A030, "D", {"retain_long_full_dates": "K", "retain_long_modified_dates": "C"}),  # Verification DT
    (0x04000563, "D", {"retain_device_identity": "K"}),  # Modifying System
    (0x00080017, "U", {"retain_uids": "K"}),  # Acquisition UID
    (0x00080019, "U", {"retain_uids": "K"}),  # Pyramid UID
    (0x00640003, "U", {"retain_uids": "K"}),  # Source Frame of Reference UID
    (0x00181203, "Z", {"retain_device_identity": "K", "retain_long_full_dates": "K",
                       "retain_long_modified_dates": "C"}),  # Calibration DateTime
    (0x300E0004, "Z", {"retain_long_full_dates": "K", "retain_long_modified_dates": "C"}),  # Review Date
    (0x00080012, "X/D", {"retain_long_full_dates": "K", "retain_long_modified_dates": "C"}),  # Instance Creation Date
    (0x00080013, "X/Z/D", {"retain_long_full_dates": "K", "retain_long_modified_dates": "C"}),
])
def test_rows_the_2023_extraction_lacked(tag, basic, options):
    row = lookup(tag)
    assert row is not None and row.basic == basic and row.options == options


def test_tampered_source_is_refused(tmp_path):
    path = generate.find_source("e1_1")
    text = path.read_text(encoding="utf-8").replace("(0008,0050)|Z|", "(0008,0050)|K|", 1)
    bad = tmp_path / path.name
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(generate.SourceError, match="content_sha256"):
        generate.load_source("e1_1", bad)


def test_next_edition_is_one_command(tmp_path, monkeypatch):
    """--from-json writes extracts of a new edition and regenerates the modules from them."""
    docs = {}
    for table in ("e1_1", "e3_10_1"):
        edition, rows = generate.load_source(table)
        rows = [dict(r) for r in rows]
        if table == "e1_1":  # pretend the next edition changed one row
            rows[0] = {**rows[0], "basic_profile": "X"}
        doc = {"edition": "2027a", "table": table, "rows": rows, "content_sha256": generate.content_sha256(rows)}
        docs[table] = tmp_path / f"{table}.json"
        docs[table].write_text(json.dumps(doc), encoding="utf-8")
    source_dir = tmp_path / "standard"
    source_dir.mkdir()
    for path in generate.SOURCE_DIR.glob("*.psv"):
        (source_dir / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(generate, "SOURCE_DIR", source_dir)
    monkeypatch.setattr(generate, "E1_1_OUT", tmp_path / "_table_e1_1.py")
    monkeypatch.setattr(generate, "E3_10_1_OUT", tmp_path / "_table_e3_10_1.py")
    monkeypatch.setattr(generate, "HERE", tmp_path / "pkg" / "deid")
    assert generate.main(["--from-json", str(docs["e1_1"]), str(docs["e3_10_1"])]) == 0
    text = (tmp_path / "_table_e1_1.py").read_text(encoding="utf-8")
    assert "EDITION = '2027a'" in text and "('(0008,0050)', 'X', ())" in text
    assert generate.main(["--check"]) == 0
