import pytest

from axiom_dagster.dicom.uids import InvalidUID, is_valid_uid, require_uid


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2.1", "2.25.0", "1.0.3", "2.25." + "9" * 58])
def test_valid(uid):
    assert is_valid_uid(uid)


@pytest.mark.parametrize(
    "uid", ["", "1", "1..2", "1.02", ".1.2", "1.2.", "../../etc", "1.2.a", "1.2 3", "2.25." + "9" * 61, None, 1.2]
)
def test_invalid(uid):
    assert not is_valid_uid(uid)


def test_require_uid_strips_padding_and_names_attribute():
    assert require_uid("1.2.3\x00", "SOPInstanceUID") == "1.2.3"
    with pytest.raises(InvalidUID, match="StudyInstanceUID"):
        require_uid("../x", "StudyInstanceUID")
