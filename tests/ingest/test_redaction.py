"""No element values in logs: pydicom's logger and warnings go through the redacting record
factory; reasons name tags and problems."""
import logging
import warnings

from pydicom import dcmread

from axiom_dagster.dicom.uids import InvalidUID, require_uid
from axiom_dagster.ingest.redaction import describe_exception, install_log_redaction, redact
from tests.realworld.damage import DAMAGES, PHI_NAME, PHI_VALUES


def test_redact_keeps_tags_and_drops_values():
    text = redact("Invalid value for VR UI: 'CANARYPHI^SECRETNAME'. Please see ... in tag (0010,0010)")
    assert "CANARYPHI" not in text and "<value>" in text
    assert "(0010,0010)" in redact("Unknown Value Representation 'XX' in tag (0010,0010)")
    assert describe_exception(ValueError(f"invalid literal for int() with base 10: b'{PHI_NAME}'")) == \
        "ValueError: invalid literal for int() with base 10: <value>"


def test_invalid_uid_message_names_the_problem_not_the_value():
    try:
        require_uid("CANARYPHI-0001", "StudyInstanceUID")
    except InvalidUID as exc:
        assert "CANARYPHI" not in str(exc) and "StudyInstanceUID" in str(exc)


def test_pydicom_warnings_and_logs_are_redacted(tmp_path, caplog):
    from pydicom.data import get_testdata_file

    install_log_redaction()
    src = get_testdata_file("CT_small.dcm", download=False)
    damaged = tmp_path / "phi.dcm"
    damaged.write_bytes(DAMAGES["patient_name_phi_bad_vr"](open(src, "rb").read(), None))
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")
        install_log_redaction()
        ds = dcmread(damaged)
        str(ds.PatientName)  # pydicom: "Invalid value for VR UI: '<the name>'"
    logged = [r.getMessage() for r in caplog.records]
    assert any("Invalid value for VR UI" in m for m in logged), logged
    assert not any(v in m for m in logged for v in PHI_VALUES)
    assert not any(v in str(w.message) for w in shown for v in PHI_VALUES)
