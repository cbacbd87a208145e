"""The lookup index: tuple keys (1-tuples for one key column) looked up by the dict's own get,
built with the cyclic collector paused and restored, and sent to worker processes whole."""
import gc
import pickle

from axiom_dagster.crosswalks.index import build_index


def test_one_and_several_key_columns():
    data = {"mrn": ["M1", "M2"], "site": ["1", "2"], "rid": ["R1", None]}
    one, dropped = build_index("x", ["mrn"], ["mrn", "site", "rid"], data)
    assert dropped == 0 and len(one) == 2
    assert one.get(("M1",)) == ("M1", "1", "R1") and one.get(("M2",)) == ("M2", "2", None)
    assert one.get(("M3",)) is None and one.get(("M1", "1")) is None
    two, _ = build_index("x", ["mrn", "site"], ["mrn", "site", "rid"], data)
    assert two.get(("M2", "2")) == ("M2", "2", None) and two.get(("M2", "1")) is None
    assert two.position("rid") == 2


def test_duplicates_are_counted():
    _, dropped = build_index("x", ["k"], ["k", "v"], {"k": ["a", "a", "b"], "v": ["1", "2", "3"]})
    assert dropped == 1


def test_collector_state_is_restored():
    assert gc.isenabled()
    build_index("x", ["k"], ["k"], {"k": ["a"]})
    assert gc.isenabled()
    gc.disable()
    try:
        build_index("x", ["k"], ["k"], {"k": ["a"]})
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_pickles_with_a_working_get():
    index, _ = build_index("x", ["k"], ["k", "v"], {"k": ["a", "b"], "v": ["1", "2"]})
    copy = pickle.loads(pickle.dumps(index))
    assert copy.get(("b",)) == ("b", "2") and copy.get(("c",)) is None
    assert (copy.name, copy.key_columns, copy.columns, len(copy)) == ("x", ("k",), ("k", "v"), 2)
