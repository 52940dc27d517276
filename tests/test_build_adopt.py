"""A RUN's upper dir (and a COPY's layer dir) becomes the layer's unpacked dir without a tar
round trip; it must hold exactly what unpacking the stored tar gives."""

from __future__ import annotations

import os
import stat

from build_helpers import build_ctx, run_image, write_files

from cache.applier import apply_layer

DOCKERFILE = """\
FROM busybox
COPY data/ /data/
RUN mkdir -p /w/sub && echo a > /w/a && ln /w/a /w/hard && ln -s a /w/link \\
    && chmod 4755 /w/a && rm /bin/vi && echo changed > /data/x
RUN rm -rf /w/sub && mkdir /w/sub && echo new > /w/sub/n && rm /w/hard
"""


def _tree(root: str) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            xattrs = {
                x: os.getxattr(p, x, follow_symlinks=False)
                for x in os.listxattr(p, follow_symlinks=False)
                if x != "security.selinux"
            }
            content = None
            if stat.S_ISREG(st.st_mode):
                content = open(p, "rb").read()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(p)
            out[rel] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                st.st_rdev if stat.S_ISCHR(st.st_mode) else 0,
                # A whiteout's own mtime is never visible (and the applier does not set it).
                0 if stat.S_ISCHR(st.st_mode) else st.st_mtime_ns // 1_000_000_000,
                content,
                xattrs,
            )
    return out


def test_adopted_dirs_equal_unpacked_tars(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": DOCKERFILE, "data/x": "x\n", "data/y": "y\n"})
    res = build_ctx(busybox_store, ctx, source_date_epoch=1000)
    image = busybox_store.get_image(res.image_id)
    layers = busybox_store.unpacked_layers(list(image.diff_ids))
    for layer in layers[1:]:
        fresh = tmp_path / f"fresh-{layer.diff_id.hex[:12]}"
        fresh.mkdir()
        with busybox_store.layer_tar(layer.diff_id) as f:
            apply_layer(f, fresh, whiteouts="overlay")
        assert _tree(str(layer.path)) == _tree(str(fresh)), layer.diff_id
    code, out = run_image(
        busybox_store, res.image_id, ["sh", "-c", "ls /w /w/sub; cat /data/x; test ! -e /bin/vi"]
    )
    assert code == 0, out
    assert out.split() == ["/w:", "a", "link", "sub", "/w/sub:", "n", "changed"]
