"""Trainability-boundary explorer: where training converges vs diverges over a hyperparameter grid.

Reproduces Sohl-Dickstein (2024, arXiv 2402.06184): one tiny depth-2 mean-field network per pixel,
trained by (minibatch) gradient descent with a learning rate per layer; each pixel is scored from
its loss trajectory (negative = converged, positive = diverged) and the border's box-counting
dimension measured. CLI: ``python -m ab.gpt.brute.fract.boundary --help``.

Modules (one job each):
    config     BoundaryConfig / Axis dataclasses, validation, JSON round trip, fingerprint
    grid       per-pixel knob values (pixel_knobs) and axis labels (axes_meta)
    problem    random data, targets, init and minibatch order (shared or per pixel)
    engine     batched training of many tiny networks, backward written by hand; reference_train
    readout    scores from loss trajectories
    tiles      resumable tiled computation on disk (atomic tile files)
    runner     compute_map / write_outputs for the tiny-network experiment
    render     PNG images of any score array
    zoom       zoom sequences (GIF, MP4 with ffmpeg)
    dimension  border pixels and box-counting dimension

Reusable API (independent of the tiny-network engine; for other per-pixel trainers):
    readout.score(trajectories, kind="sum"|"final"|"probe", window=20, clip=1e6, probe_step=None)
        trajectories (B, steps) of losses -> scores (B,), negative = converged
    readout.scores_all(trajectories, ...) -> {"sum", "final", "probe", "converged"}
    tiles.run_tiles(shape, tile, job, directory, fingerprint, on_tile=None, progress=False)
        job(r0, r1, c0, c1) -> {name: (r1-r0, c1-c0) array}; finished tiles are kept; rerun resumes
    render.save_png(scores, axes_meta, path, title=None)   any 2-D score array (row 0 = lowest y)
        axes_meta = {"x": {"label", "lo", "hi", "log"}, "y": {...}} or None
    render.save_raw_png(scores, path); render.colorize(scores) -> RGB uint8
    dimension.map_dimension(scores) -> Dimension(dimension, sizes, counts, intercept)
    dimension.box_dimension(bool_mask); dimension.border_mask(scores)
    dimension.median_dimension(list_of_scores); dimension.save_loglog(results, path)
    zoom.save_gif(rgb_images, path); zoom.save_mp4(rgb_images, path)

Example, another trainer per pixel:
    def job(r0, r1, c0, c1):
        losses = my_trainer(lrs[r0:r1, c0:c1])          # (pixels, steps)
        return readout.scores_all(losses)
    arrays, _ = tiles.run_tiles((ny, nx), 8, job, "out/tiles", fingerprint="my-settings-v1")
    render.save_png(arrays["sum"], {"x": {...}, "y": {...}}, "out/map.png")
    print(dimension.map_dimension(arrays["sum"]).dimension)
"""
