"""Multi-stage builds: COPY --from by name and index, --target, unneeded stages skipped,
FROM <stage>, and a stage rebuilt re-runs the COPY --from that reads it."""

from __future__ import annotations

from build_helpers import build_ctx, image_view, write_files

from cache.digest import EMPTY_TAR_DIFF_ID

DOCKERFILE = """\
ARG BASE=busybox
FROM ${BASE} AS builder
COPY src.txt /src.txt
RUN mkdir /out && tr a-z A-Z < /src.txt > /out/app.txt && chown 7:8 /out/app.txt

FROM busybox AS unused
RUN exit 1

FROM builder AS tester
RUN test -f /out/app.txt

FROM busybox
COPY --from=builder /out/app.txt /app/
COPY --from=0 /out /out2
CMD ["cat", "/app/app.txt"]
"""


def test_copy_from_stage_and_skip_unused(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": DOCKERFILE, "src.txt": "hello\n"})
    res = build_ctx(busybox_store, ctx)
    names = [s.name for s in res.steps]
    assert not any("unused" in n or "tester" in n for n in names)  # not needed by the target
    view = image_view(busybox_store, res.image_id)
    assert view.read_text("/app/app.txt") == "HELLO\n"
    assert view.read_text("/out2/app.txt") == "HELLO\n"
    st = view.lstat("app/app.txt")
    assert (st.st_uid, st.st_gid) == (7, 8)  # --from keeps the owner
    assert res.containers_run == 1

    (ctx / "src.txt").write_text("changed\n")
    again = build_ctx(busybox_store, ctx)
    by_name = {s.name: s for s in again.steps}
    final_copy = by_name["[stage-3 2/4] COPY --from=builder /out/app.txt /app/"]
    assert not final_copy.cached
    assert final_copy.why == "src:--from=builder:/out/app.txt changed"
    view = image_view(busybox_store, again.image_id)
    assert view.read_text("/app/app.txt") == "CHANGED\n"


def test_target_builds_only_what_it_needs(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": DOCKERFILE, "src.txt": "x\n"})
    res = build_ctx(busybox_store, ctx, target="tester")
    names = [s.name for s in res.steps]
    assert any(n.startswith("[builder") for n in names)
    assert any(n.startswith("[tester") for n in names)
    assert not any(n.startswith("[stage-3") or n.startswith("[unused") for n in names)
    img = busybox_store.get_image(res.image_id)
    # busybox + COPY + RUN of builder + the test RUN, which changes nothing: an empty layer,
    # as Docker makes for every RUN (not an empty-layer history entry)
    assert len(img.diff_ids) == 4
    assert img.diff_ids[-1] == EMPTY_TAR_DIFF_ID
    assert not img.config["history"][-1].get("empty_layer")


PARALLEL = """\
FROM busybox AS a
RUN echo a > /a && sleep 1

FROM busybox AS b
RUN echo b > /b && sleep 1

FROM busybox
COPY --from=a /a /a
COPY --from=b /b /b
"""


def test_independent_stages_both_built(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": PARALLEL})
    res = build_ctx(busybox_store, ctx)
    assert res.containers_run == 2
    view = image_view(busybox_store, res.image_id)
    assert view.read_text("/a") == "a\n" and view.read_text("/b") == "b\n"


def test_failing_stage_stops_the_build(busybox_store, tmp_path):
    import pytest

    from builder.steps import RunFailed

    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": PARALLEL.replace("echo b > /b && sleep 1", "exit 4")})
    index = (busybox_store.root / "index.json").read_bytes()
    with pytest.raises(RunFailed, match="exit code: 4"):
        build_ctx(busybox_store, ctx, tags=["p"])
    assert (busybox_store.root / "index.json").read_bytes() == index
    assert list((busybox_store.root / "tmp").iterdir()) == []


def test_examples_multistage_builds(busybox_store, tmp_path):
    import shutil
    from pathlib import Path

    ctx = tmp_path / "multi"
    shutil.copytree(Path(__file__).resolve().parent.parent / "examples" / "multistage", ctx)
    res = build_ctx(busybox_store, ctx, tags=["multi"])
    view = image_view(busybox_store, res.image_id)
    assert view.read_text("/app/sorted.txt") == "apple\nfig\npear\n"
    assert view.read_text("/app/stamp.txt") == "stamp: dev\n"
    assert not any(s.name.startswith("[test") for s in res.steps)
