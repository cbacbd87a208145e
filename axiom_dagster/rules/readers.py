"""Attribute path readers for the generated matcher: (ds._dict, ctx) -> (values,
present, vr), equal to `EvalContext.values`, decoding raw elements directly."""
from __future__ import annotations

import struct
from typing import Any

from pydicom.dataelem import RawDataElement

from axiom_dagster.dicom import fastvalues as _fv
from axiom_dagster.dicom.private_blocks import creator_block
from axiom_dagster.dicom.raw_sequences import nested_values
from axiom_dagster.rules.paths import TagPath
from axiom_dagster.rules.context import _UNSET

def single_tag(path: TagPath | None) -> bool:
    """A path to one standard top-level attribute."""
    return path is not None and len(path.steps) == 1 and path.steps[0].tag is not None


_READ_ERRORS = (_fv.Fallback, struct.error, IndexError, ValueError)


def path_reader(path: TagPath):
    """(ds._dict, ctx) -> (values, present, vr), the same as `ctx.values(path)`, for the
    common paths: one standard attribute, one private attribute, `Seq[*].X` or `Seq[n].X`
    with standard tags. None for other paths.

    Raw elements are decoded straight from their bytes (fastvalues.py), with FastTag
    lookups built here once; converted elements, values the decoders refuse, and
    non-default pydicom settings go through `ctx.values`. No cache: the generated
    matcher keeps each result in a local (`_reader` adds the context's cache).
    """
    steps = path.steps
    if len(steps) == 1 and steps[0].tag is not None:
        return _standard_reader(path)
    if len(steps) == 1:
        return _private_reader(path)
    if len(steps) == 2 and steps[0].tag is not None and steps[1].tag is not None:
        return _nested_reader(path)
    return None


def _standard_reader(path: TagPath):
    step = path.steps[0]
    probe, dict_vr, index = _fv.FastTag(step.tag), path.vr, step.index
    decoders, fields = _fv.DECODERS, _fv.VR_VALUE_LITTLE
    dict_dec = decoders.get(dict_vr)  # None for UN, ambiguous VRs and the undecoded ones

    def read(d, ctx):
        elem = d.get(probe)
        if elem is None:
            return [], False, dict_vr
        if elem.__class__ is RawDataElement and ctx.raw_ok:
            vr, data, little = fields(elem)
            if not vr or vr == dict_vr:  # implicit VR: the dictionary's
                vr, dec = dict_vr, dict_dec
            else:
                dec = decoders.get(vr)
            if dec is not None and data is not None:
                codec = ctx.codec
                if codec is _UNSET:
                    codec = ctx._codec()
                try:
                    values = dec(data, little, codec) if data else []
                except _READ_ERRORS:
                    return ctx.values(path)
                if index is not None and index != "*":
                    values = values[index : index + 1]
                return values, True, vr
        return ctx.values(path)
    return read


def _private_reader(path: TagPath):
    # As EvalContext._fast: the creator's block (shared by the paths of one creator,
    # in the context's cache), then the element in it.
    step = path.steps[0]
    group, creator, offset, index, dict_vr = step.group, step.creator, step.offset, step.index, path.vr
    key = ("creator", group, creator)
    probes: dict[int, Any] = {}  # block -> FastTag of the element

    def read(d, ctx):
        if not ctx.raw_ok:
            return ctx.values(path)
        cache = ctx._cache
        try:
            block = cache.get(key, False)
            if block is False:
                block = cache[key] = creator_block(ctx.ds, group, creator, None)
            if block is None:
                return [], False, dict_vr
            probe = probes.get(block)
            if probe is None:
                probe = probes[block] = _fv.FastTag((group << 16) | (block << 8) | offset)
            elem = d.get(probe)
            if elem is None:
                return [], False, dict_vr
            if elem.__class__ is not RawDataElement:
                return ctx.values(path)
            values, vr = _fv.raw_values(elem, ctx._codec())
        except _READ_ERRORS:
            return ctx.values(path)
        if isinstance(index, int):
            values = values[index : index + 1]
        return values, True, vr
    return read


def _nested_reader(path: TagPath):
    first, last = path.steps
    probe, want, dict_vr = _fv.FastTag(first.tag), last.tag, path.vr

    def read(d, ctx):
        elem = d.get(probe)
        if elem is None:
            return [], False, dict_vr
        if elem.__class__ is not RawDataElement or not ctx.raw_ok:
            return ctx.values(path)
        try:
            values, found, vr = nested_values(elem, first.index, want, last.index, ctx._codec())
        except _READ_ERRORS:
            return ctx.values(path)
        return values, found, (vr if found else dict_vr)
    return read


def _reader(path: TagPath):
    """ctx -> (values, present, vr), the same as `ctx.values(path)`: `path_reader`
    with the context's cache, or `ctx.values` for the paths it does not read."""
    read = path_reader(path)
    if read is None:
        return lambda ctx: ctx.values(path)
    text = path.text

    def cached(ctx):
        cache = ctx._cache
        hit = cache.get(text)
        if hit is None:
            hit = cache[text] = read(ctx.ds._dict, ctx)
        return hit
    return cached
