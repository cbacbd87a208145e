"""Where catalog files live: a local folder, or a bucket on GCS (gs://) or S3 (s3://)
reached through fsspec. Every file is written whole in one step: a temp file renamed into
place on disk, one object upload (a single PUT, atomic on both services) in a bucket.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import polars as pl

# fsspec options per protocol, from the environment (tests point these at local stand-ins):
# GCS: STORAGE_EMULATOR_HOST (as google-cloud-storage); S3: AWS_ENDPOINT_URL (as boto3).


def storage_options(root: str) -> dict:
    if root.startswith("gs://") and os.environ.get("STORAGE_EMULATOR_HOST"):
        return {"endpoint_url": os.environ["STORAGE_EMULATOR_HOST"], "token": "anon"}
    if root.startswith("s3://") and os.environ.get("AWS_ENDPOINT_URL"):
        return {"endpoint_url": os.environ["AWS_ENDPOINT_URL"]}
    return {}


class CatalogStorage:
    """Files under one catalog root, addressed by paths relative to it ("instances/...")."""

    def __init__(self, root: str | Path):
        self.root = str(root).rstrip("/")
        self.remote = "://" in self.root
        if self.remote:
            # gcsfs's experimental zonal-bucket support opens a gRPC channel to the endpoint,
            # which neither plain GCS buckets nor the emulator need.
            os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
            import fsspec

            protocol = self.root.split("://", 1)[0]
            self.fs = fsspec.filesystem(protocol, **storage_options(self.root))
        else:
            self.fs = None

    def url(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.url(rel)) if self.remote else os.path.exists(self.url(rel))

    def list(self, rel: str) -> list[str]:
        """Relative paths of the .parquet files under a folder, recursively, sorted."""
        base = self.url(rel)
        if self.remote:
            self.fs.invalidate_cache()
            found = [p for p in self.fs.find(base) if p.endswith(".parquet")]
            prefix = self.root.split("://", 1)[1] + "/"
            return sorted(p[len(prefix):] for p in found)
        if not os.path.isdir(base):
            return []
        out = []
        for folder, _dirs, files in os.walk(base):
            out += [os.path.relpath(os.path.join(folder, f), self.root) for f in files if f.endswith(".parquet") and not f.startswith(".")]
        return sorted(out)

    def write_parquet(self, rel: str, table: pl.DataFrame) -> str:
        """Write one file whole (readers see the old file or the new one, never a part)."""
        final = self.url(rel)
        if self.remote:
            buf = io.BytesIO()
            table.write_parquet(buf, compression="zstd", row_group_size=_ROW_GROUP)
            self.fs.pipe_file(final, buf.getvalue())
            return final
        path = Path(final)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        table.write_parquet(tmp, compression="zstd", row_group_size=_ROW_GROUP)
        os.replace(tmp, path)
        return final

    def read_parquet(self, rels: list[str]) -> pl.DataFrame:
        if self.remote:
            frames = [pl.read_parquet(io.BytesIO(self.fs.cat_file(self.url(r)))) for r in rels]
        else:
            frames = [pl.read_parquet(self.url(r)) for r in rels]
        return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()

    def remove(self, rel: str) -> None:
        if self.remote:
            self.fs.rm_file(self.url(rel))
        else:
            os.unlink(self.url(rel))


# Row groups small enough that min/max statistics on the sorted StudyInstanceUID let a
# single-study lookup skip nearly everything in a large (compacted) file.
_ROW_GROUP = 16_384
