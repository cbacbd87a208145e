"""Fused leaves: read + decode + test in one call for the most common conditions
(the generated matcher's hot path; Leaf._eval stays the reference)."""
from __future__ import annotations

import operator
import struct
from typing import Any

from pydicom.dataelem import RawDataElement

from axiom_dagster.dicom import fastvalues as _fv
from axiom_dagster.dicom import raw_sequences
from axiom_dagster.rules.compare import _ORDER, _to_float
from axiom_dagster.rules.context import _UNSET
from axiom_dagster.rules.leaf import _NEGATIVE, Leaf
from axiom_dagster.rules.readers import _READ_ERRORS, _reader, single_tag

_FUSED_TEXT_VRS = _fv._SPLIT_RSTRIP_ALL | _fv._SPLIT_RSTRIP_EACH | _fv._SINGLE | {"PN"}
_RAW_VR = RawDataElement._fields.index("VR")
_RAW_VALUE = RawDataElement._fields.index("value")
_RAW_LITTLE = RawDataElement._fields.index("is_little_endian")


def fused_test(leaf: Leaf, shared: bool = False):
    """(ds._dict, ctx) -> bool, the same as `leaf.value_test()` on `ctx.values(leaf.path)`,
    for a value leaf on one standard attribute whose dictionary VR has a raw decoder
    (fastvalues.DECODERS); None for other leaves.

    A raw element of the dictionary VR (or implicit) is decoded here, by the VR's
    decoder, and its values tested by the leaf's predicate for that VR. For text VRs
    and IS/DS, one ASCII value (no backslash, no ESC, a plain number) is the common
    case: its text with the padding stripped, as the decoder gives it, without the
    decoder call; eq, ne, in and not_in on text are then inline. Anything else
    (converted elements, another VR, values the decoder refuses, non-default pydicom
    settings) takes the shared reader and value test (`_reader`, the context's cache).
    """
    path = leaf.path
    if leaf.op in ("exists", "not_exists"):
        return None
    if path is None:
        return _fused_meta(leaf)
    if len(path.steps) == 1 and path.steps[0].tag is None:
        return _fused_private(leaf)
    if len(path.steps) == 2 and path.steps[0].tag is not None and path.steps[1].tag is not None:
        # a sequence walk: fused only when no other leaf reads the path (`shared`)
        return None if shared else _fused_nested(leaf)
    if not single_tag(path):
        return None
    step = path.steps[0]
    dict_vr, index = path.vr, step.index
    dec = _fv.DECODERS.get(dict_vr)
    if dec is None:
        return None
    if index == "*":
        index = None
    if dict_vr in _FUSED_TEXT_VRS:
        kind, number = "text", None
    elif dict_vr == "IS":
        kind, number = "number", str.isdigit
    elif dict_vr == "DS":
        kind, number = "number", _plain_ds
    elif dict_vr in _fv._BINARY:
        kind, number = "binary", None
    else:
        kind, number = "other", None
    probe = _fv.FastTag(step.tag)
    test, slow_read = leaf.value_test(), _reader(path)
    empty, match_all = leaf.op in _NEGATIVE, leaf.match_all
    pred = leaf._predicate(dict_vr)
    op, target = leaf.op, leaf.target
    inline = None
    if kind == "text" and not leaf.ci and dict_vr not in ("DA", "TM", "DT"):
        if op in ("eq", "ne") and isinstance(target, str):
            inline = op
        elif op in ("in", "not_in"):
            inline, target = op, frozenset(target)
    one = index is None or index == 0  # a single value is the one selected
    is_int = number is str.isdigit  # the decoders' plain spellings: IS digits, DS one '.' too
    any_text = inline in ("eq", "in") and not match_all  # several text values, tested inline
    split_any = any_text and index is None and dict_vr in _fv._SPLIT_RSTRIP_ALL
    # IS/DS: a plain number's text always converts, so `pred` is a float comparison
    fcmp = fb = None
    if kind in ("number", "binary"):  # normaliser(vr) is _to_float for both
        if op in _ORDER:
            fb = leaf._ordered_target(dict_vr, _to_float)  # normaliser(IS/DS) is _to_float
            fcmp = _ORDER[op] if fb is not None else None
        elif op in ("eq", "ne") and isinstance(target, (int, float)) and not isinstance(target, bool):
            fcmp, fb = (operator.eq if op == "eq" else operator.ne), float(target)
    need_codec = dict_vr in _fv._CHARSET_VRS  # the other decoders never use the codec
    raw_class, i_vr, i_value, i_little = RawDataElement, _RAW_VR, _RAW_VALUE, _RAW_LITTLE

    def decoded(e, data, ctx):
        """The leaf's result on the element's decoded values (the decoder call)."""
        codec = None
        if need_codec:
            codec = ctx.codec
            if codec is _UNSET:
                codec = ctx._codec()
        try:
            values = dec(data, e[i_little], codec)
        except _READ_ERRORS:
            return test(slow_read(ctx))
        if index is not None:
            values = values[index : index + 1]
        if not values:
            return empty
        if len(values) == 1:
            return pred(values[0])
        if any_text:  # (text decoders give str values)
            if inline == "eq":
                return target in [v.strip() for v in values]
            return not target.isdisjoint([v.strip() for v in values])
        return all(map(pred, values)) if match_all else any(map(pred, values))

    if kind == "number":
        def fused_number(d, ctx):
            e = d.get(probe)
            if e is None:
                return empty
            if e.__class__ is raw_class and ctx.raw_ok:
                data = e[i_value]
                vr = e[i_vr]
                if (vr == dict_vr or not vr) and data is not None:
                    if not data:
                        return empty
                    if one and data.isascii() and 27 not in data and 92 not in data:
                        s = data.decode("ascii").strip().rstrip(" \x00").strip()
                        if s and (s.isdigit() if is_int else s.replace(".", "", 1).isdigit()):  # plain
                            return pred(s) if fcmp is None else fcmp(float(s), fb)
                    return decoded(e, data, ctx)
            return test(slow_read(ctx))
        return fused_number

    if kind == "binary":
        fmt = _fv._BINARY[dict_vr]
        size = _fv._BINARY_SIZE[fmt]
        unpack = {True: struct.Struct("<" + fmt).unpack, False: struct.Struct(">" + fmt).unpack}

        def fused_binary(d, ctx):
            e = d.get(probe)
            if e is None:
                return empty
            if e.__class__ is raw_class and ctx.raw_ok:
                data = e[i_value]
                vr = e[i_vr]
                if (vr == dict_vr or not vr) and data is not None:
                    if one and len(data) == size:  # the decoder's single value
                        v = unpack[e[i_little]](data)[0]
                        return pred(v) if fcmp is None else fcmp(float(v), fb)
                    return decoded(e, data, ctx) if data else empty
            return test(slow_read(ctx))
        return fused_binary

    if kind == "other":
        def fused(d, ctx):
            e = d.get(probe)
            if e is None:
                return empty
            if e.__class__ is raw_class and ctx.raw_ok:
                data = e[i_value]
                vr = e[i_vr]
                if (vr == dict_vr or not vr) and data is not None:
                    return decoded(e, data, ctx) if data else empty
            return test(slow_read(ctx))
        return fused

    def fused_text(d, ctx):
        e = d.get(probe)
        if e is None:
            return empty
        if e.__class__ is raw_class and ctx.raw_ok:
            data = e[i_value]
            vr = e[i_vr]
            if (vr == dict_vr or not vr) and data is not None:
                if not data:
                    return empty
                if not (one and data.isascii() and 27 not in data and 92 not in data):
                    if split_any and data.isascii() and 27 not in data:
                        # several ASCII values of a CS/UI/AS (the decoder: the text
                        # right-stripped, split, empty values dropped), eq/in inline
                        vals = [v.strip() for v in data.decode("ascii").rstrip(" \x00").split("\\") if v != ""]
                        if not vals:
                            return empty
                        return target in vals if inline == "eq" else not target.isdisjoint(vals)
                    return decoded(e, data, ctx)
                s = data.decode("ascii").rstrip(" \x00")
                if not s:
                    return empty
                if inline is None:
                    return pred(s)
                if inline == "eq":
                    return s.strip() == target
                if inline == "ne":
                    return s.strip() != target
                if inline == "in":
                    return s.strip() in target
                return s.strip() not in target
        return test(slow_read(ctx))
    return fused_text


def _fused_meta(leaf: Leaf):
    """A value leaf on arrival metadata: `_eval` with the value read inline."""
    name, empty, pred = leaf.meta, leaf.op in _NEGATIVE, leaf._predicate(None)

    def fused_meta(d, ctx):
        v = getattr(ctx.meta, name)
        if v is None or v == "":  # no values (as `v in (None, "")`)
            return empty
        return pred(v)
    return fused_meta


def _fused_private(leaf: Leaf):
    """A value leaf on a private attribute: the common case (the creator in block
    0x10 of a raw dataset, its element raw with an explicit decodable VR) read here;
    everything else through the shared private reader (`_reader`)."""
    path = leaf.path
    step = path.steps[0]
    group, creator, offset, index = step.group, step.creator, step.offset, step.index
    if index == "*":
        index = None
    first = _fv.FastTag((group << 16) | 0x10)  # the first block's creator
    probe = _fv.FastTag((group << 16) | 0x1000 | offset)  # the element in that block
    test, slow_read = leaf.value_test(), _reader(path)
    empty, match_all = leaf.op in _NEGATIVE, leaf.match_all
    preds: dict[str, Any] = {}  # VR -> the leaf's predicate
    decoders = _fv.DECODERS
    raw_class, i_vr, i_value, i_little = RawDataElement, _RAW_VR, _RAW_VALUE, _RAW_LITTLE

    def fused_private(d, ctx):
        if ctx.raw_ok:
            c = d.get(first)
            if c is not None and c.__class__ is raw_class:
                text = c[i_value]  # as fastvalues._creator_text on a raw element
                if (text is not None and text.isascii() and 92 not in text
                        and text.decode("ascii").rstrip("\x00 ").strip() == creator):
                    e = d.get(probe)
                    if e is None:
                        return empty
                    if e.__class__ is raw_class:
                        vr = e[i_vr]
                        data = e[i_value]
                        dec = decoders.get(vr) if vr else None
                        if dec is not None and data is not None:
                            codec = ctx.codec
                            if codec is _UNSET:
                                codec = ctx._codec()
                            try:
                                values = dec(data, e[i_little], codec) if data else []
                            except _READ_ERRORS:
                                return test(slow_read(ctx))
                            if index is not None:
                                values = values[index : index + 1]
                            if not values:  # value_test on (values, True, vr), inline
                                return empty
                            pred = preds.get(vr)
                            if pred is None:
                                pred = preds[vr] = leaf._predicate(vr)
                            if len(values) == 1:
                                return pred(values[0])
                            return all(map(pred, values)) if match_all else any(map(pred, values))
        return test(slow_read(ctx))
    return fused_private


def _fused_nested(leaf: Leaf):
    """A value leaf on `Seq[*].X` / `Seq[n].X` (standard tags): `_nested_reader` and
    the value test in one call."""
    path = leaf.path
    first, last = path.steps
    probe, want, dict_vr, index, last_index = _fv.FastTag(first.tag), last.tag, path.vr, first.index, last.index
    test, slow_read = leaf.value_test(), _reader(path)
    empty = leaf.op in _NEGATIVE
    nested_values, raw_class = raw_sequences.nested_values, RawDataElement

    def fused_nested(d, ctx):
        e = d.get(probe)
        if e is None:
            return empty
        if e.__class__ is raw_class and ctx.raw_ok:
            codec = ctx.codec
            if codec is _UNSET:
                codec = ctx._codec()
            try:
                values, found, vr = nested_values(e, index, want, last_index, codec)
            except _READ_ERRORS:
                return test(slow_read(ctx))
            return test((values, found, (vr if found else dict_vr)))
        return test(slow_read(ctx))
    return fused_nested


def _plain_ds(s: str) -> bool:
    return s.replace(".", "", 1).isdigit()
