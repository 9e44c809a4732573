"""The DreamCraft experiment (gin `dreamcraft.run`): methods x seeds on the same targets, then the comparison.

    workdir/
      config.gin, status.json                    (the launcher)
      targets/view_XX.png, cameras.json          the training views (also the format for supplying your own PNGs)
      reference/                                 the reference structure: preview.png, exports
      runs/<method>_seed<k>/                     checkpoints/, metrics.jsonl, tensorboard/, renders/step_*.png,
                                                 structure.npz, <name>.schem/.litematic/.mcfunction,
                                                 preview.png, turntable.gif, result.json
      comparison.png                             reference / quantized / baseline side by side (first seed)
      results.md, results.json                   hard-grid render loss and constraint satisfaction, mean over seeds

A finished run (its result.json) is not trained again, and an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Annotated, Any

import gin
import numpy as np
from absl import logging

from libs.dreamcraft import guidance as guidance_lib
from libs.dreamcraft import pictures
from libs.dreamcraft.train import METHODS, FieldRun, TrainConfig
from libs.envs.voxels import constraints as constraints_lib
from libs.envs.voxels import export
from libs.envs.voxels.palette import Palette, load_palette
from libs.envs.voxels.structures import block_histogram, reference_structure
from libs.models import voxel_field
from libs.models.clip import ClipScorer
from libs.train import rundir
from libs.train.errors import ConfigError
from libs.train.launch import POSITIVE


@gin.configurable("dreamcraft")
def run(workdir: str, guidance: str = "photometric", methods: Sequence[str] = METHODS, seeds: Sequence[int] = (0,),
        image_size: Annotated[int, POSITIVE] = 64, rays_per_step: Annotated[int, POSITIVE] = 4096,
        target_pngs: str | None = None, constraints: Sequence[Any] = (), eval_views: Annotated[int, POSITIVE] = 8,
        export_name: str = "dreamcraft", preview_size: Annotated[int, POSITIVE] = 128) -> dict[str, Any]:
    """Trains every method x seed on the same guidance and reports the comparison.

    guidance: "photometric" (target views of the reference structure, or `target_pngs`), "silhouette" (their
    masks only) or "text_image" (a CLIP-style scorer, gin `text_image` / `ClipScorer`).
    constraints: gin references to constraint classes (`@BlockDistribution`, `@Adjacency`, `@Support`,
    `@Connectivity`), trained on by "quantized" and measured on every method.
    """
    guidance_lib.check_kind(guidance)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or not seeds:
        raise ConfigError(f"dreamcraft.methods {list(methods)} / seeds {list(seeds)}: methods from {METHODS}, "
                          "at least one of each")
    palette = load_palette()
    field_config = voxel_field.FieldConfig()
    grid_shape = field_config.grid
    built = constraints_lib.build(palette, constraints)
    reference = None
    if guidance != "text_image" and not target_pngs:
        reference = reference_structure(palette)
        _reference_scale(reference.shape, grid_shape)
        _save_reference(workdir, reference, palette, built, export_name, preview_size)
    guide, eval_targets = _make_guidance(workdir, guidance, palette, reference, grid_shape, image_size,
                                         rays_per_step, target_pngs, eval_views)
    results = {}
    for method in methods:
        for seed in seeds:
            name = f"{method}_seed{seed}"
            out = _run_one(os.path.join(workdir, "runs", name), FieldRun(
                palette, guide, built, field_config, TrainConfig(), method=method, seed=int(seed)),
                eval_targets, built, export_name, preview_size)
            if out.get("status") != "complete":
                return {"status": "incomplete", "run": name, "step": out.get("step")}
            results[name] = out
    summary = summarise(results, methods, [c.name for c in built])
    _write_results(workdir, summary, results, reference, palette, methods, seeds[0], preview_size)
    return {"status": "complete", **{f"{m}/{k}": v for m, row in summary.items() for k, v in row.items()
                                     if k in ("hard_render_mse", "constraints_satisfied")}}


def _save_reference(workdir: str, reference: np.ndarray, palette: Palette, built, name: str, size: int) -> None:
    out = os.path.join(workdir, "reference")
    if os.path.exists(os.path.join(out, "reference.json")):
        return
    pictures.preview(os.path.join(out, "preview.png"), reference, palette, size=size)
    export.export_all(out, "reference", reference, palette.ids, name=f"{name} reference")
    info = {"solid_blocks": int((reference > 0).sum()), "histogram": block_histogram(reference, palette),
            "constraints": constraints_lib.evaluate(built, reference) if built else {}}
    _write_json(os.path.join(out, "reference.json"), info)
    logging.info("dreamcraft: reference structure %s, %d solid blocks, histogram %s, constraints %s",
                 reference.shape, info["solid_blocks"], info["histogram"], info["constraints"])


def _make_guidance(workdir, kind, palette, reference, grid_shape, image_size, rays_per_step, target_pngs,
                   eval_views):
    """The guidance object and the held-out evaluation targets (images, cameras) or None."""
    if kind == "text_image":
        return guidance_lib.TextImage(ClipScorer(), grid_shape), None
    if target_pngs:
        images, masks, cams = guidance_lib.load_target_pngs(target_pngs, grid_shape)
        eval_targets = (images, cams)  # no held-out views of a supplied target: scored on the training views
    else:
        scale = _reference_scale(reference.shape, grid_shape)
        cams = guidance_lib.target_cameras(grid_shape)
        images, masks = guidance_lib.render_targets(reference, palette, cams.scaled(scale), image_size)
        _save_targets(os.path.join(workdir, "targets"), images, cams, grid_shape)
        held_out = guidance_lib.target_cameras(grid_shape, views=eval_views, held_out=True)
        eval_targets = (guidance_lib.render_targets(reference, palette, held_out.scaled(scale), image_size)[0],
                        held_out)
    cls = guidance_lib.Photometric if kind == "photometric" else guidance_lib.Silhouette
    return cls(images, masks, cams, grid_shape, rays_per_step=rays_per_step), eval_targets


def _reference_scale(reference_shape, grid_shape) -> int:
    """How many times finer the reference is than the field's grid (1, or an integer factor on every axis): a finer
    reference gives targets no grid of the field's size reproduces exactly, as real images would be."""
    factors = {r / g for r, g in zip(reference_shape, grid_shape)}
    if len(factors) != 1 or not float(next(iter(factors))).is_integer() or next(iter(factors)) < 1:
        raise ConfigError(f"reference structure {tuple(reference_shape)} must be voxel_field.grid {tuple(grid_shape)} "
                          "times an integer on every axis")
    return int(next(iter(factors)))


def _save_targets(folder: str, images: np.ndarray, cams, grid_shape) -> None:
    """The training views as PNGs with a cameras.json: what `target_pngs` reads, so they double as an example."""
    if os.path.exists(os.path.join(folder, "cameras.json")):
        return
    from PIL import Image  # pylint: disable=import-outside-toplevel

    os.makedirs(folder, exist_ok=True)
    azimuths, elevations = pictures.vr.orbit_angles(cams, grid_shape)
    views = []
    for i, image in enumerate(pictures.to_uint8(images)):
        Image.fromarray(image).save(os.path.join(folder, f"view_{i:02d}.png"))
        views.append({"file": f"view_{i:02d}.png", "azimuth": round(float(azimuths[i]), 3),
                      "elevation": round(float(elevations[i]), 3)})
    _write_json(os.path.join(folder, "cameras.json"), {"fov_degrees": cams.fov_degrees, "views": views})


def _run_one(out: str, field_run: FieldRun, eval_targets, built, export_name: str, size: int) -> dict[str, Any]:
    result_path = os.path.join(out, "result.json")
    if os.path.exists(result_path):
        with open(result_path, encoding="utf-8") as f:
            return json.load(f)
    palette = field_run.palette

    def on_render(step: int, grid: np.ndarray) -> None:
        pictures.preview(os.path.join(out, "renders", f"step_{step:06d}.png"), grid, palette, size=size)

    trained = field_run.train(out, on_render=on_render, should_stop=rundir.stop_requested)
    if trained["status"] != "complete":
        return trained
    grid = trained["grid"]
    result: dict[str, Any] = {"status": "complete", "method": field_run.method, "seed": field_run.seed,
                              "steps": trained["step"], "train_seconds": round(trained["seconds"], 1),
                              "solid_blocks": int((grid > 0).sum()), "histogram": block_histogram(grid, palette)}
    if eval_targets is not None:
        images, cams = eval_targets
        rendered = pictures.render_views(grid, palette, cams, images.shape[1])
        mse = float(np.mean((rendered - images) ** 2))
        result.update(hard_render_mse=mse, hard_render_psnr=float(10 * np.log10(1.0 / max(mse, 1e-12))))
    if isinstance(field_run.guidance, guidance_lib.TextImage):
        scorer = field_run.guidance.scorer
        cams = pictures.vr.ring_cameras(8, (30.0,), grid.shape)
        result["clip_similarity"] = float(np.mean(scorer.score(pictures.render_views(grid, palette, cams, 64))))
        result["scorer"] = scorer.label
    if built:
        result["constraints"] = constraints_lib.evaluate(built, grid)
        result["constraints_satisfied"] = result["constraints"]["constraints/satisfied"]
    np.savez_compressed(os.path.join(out, "structure.npz"), grid=grid, block_ids=np.asarray(palette.ids))
    result["exports"] = export.export_all(out, export_name, grid, palette.ids,
                                          name=f"{export_name} {field_run.method} seed {field_run.seed}")
    pictures.preview(os.path.join(out, "preview.png"), grid, palette, size=size)
    pictures.turntable(os.path.join(out, "turntable.gif"), grid, palette)
    _write_json(result_path, result)
    logging.info("dreamcraft: %s seed %d done: %s", field_run.method, field_run.seed, rundir.one_line(
        {k: v for k, v in result.items() if k in ("hard_render_mse", "constraints_satisfied", "solid_blocks")}))
    return result


def summarise(results: dict[str, dict[str, Any]], methods: Sequence[str], constraint_names: Sequence[str]
              ) -> dict[str, dict[str, Any]]:
    """Per method: mean and standard deviation over seeds of the hard-grid metrics and of each constraint's."""
    summary = {}
    for method in methods:
        rows = [r for r in results.values() if r["method"] == method]
        stats: dict[str, Any] = {"seeds": len(rows)}
        keys = ["hard_render_mse", "hard_render_psnr", "clip_similarity", "constraints_satisfied", "solid_blocks"]
        keys += [f"{c}/{m}" for c in constraint_names for m in ("violation", "satisfied")]
        for key in keys:
            values = [_lookup(r, key) for r in rows]
            values = [v for v in values if v is not None]
            if values:
                stats[key] = float(np.mean(values))
                stats[key + "_std"] = float(np.std(values))
        summary[method] = stats
    return summary


def _lookup(result: dict[str, Any], key: str) -> float | None:
    if key in result:
        return float(result[key])
    return result.get("constraints", {}).get(key)


def _write_results(workdir, summary, results, reference, palette, methods, first_seed, size) -> None:
    lines = ["# DreamCraft: quantized in training vs quantized after training", "",
             "Mean ± standard deviation over seeds; the hard-grid render loss is the mean squared error of the "
             "quantized structure's renders against the reference's on held-out views (against supplied target "
             "PNGs: on their own views).", "",
             "| method | seeds | hard render MSE | PSNR (dB) | constraints satisfied | solid blocks |",
             "|---|---|---|---|---|---|"]
    fmt = lambda s, k, p: f"{s[k]:.{p}f} ± {s[k + '_std']:.{p}f}" if k in s else "-"
    for method in methods:
        s = summary[method]
        lines.append(f"| {method} | {s['seeds']} | {fmt(s, 'hard_render_mse', 5)} | {fmt(s, 'hard_render_psnr', 2)} "
                     f"| {fmt(s, 'constraints_satisfied', 2)} | {fmt(s, 'solid_blocks', 0)} |")
    names = sorted({k.rsplit('/', 1)[0] for s in summary.values() for k in s if k.endswith("/violation")})
    if names:
        lines += ["", "Constraint violations (lower is better; what each counts: docs/dreamcraft.md):", "",
                  "| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for method in methods:
            lines.append(f"| {method} | " + " | ".join(fmt(summary[method], f"{n}/violation", 3) for n in names)
                         + " |")
    with open(os.path.join(workdir, "results.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    _write_json(os.path.join(workdir, "results.json"), {"summary": summary, "runs": results})
    grids = [np.load(os.path.join(workdir, "runs", f"{m}_seed{first_seed}", "structure.npz"))["grid"]
             for m in methods]
    if reference is not None:
        grids.insert(0, reference)
    rows = [pictures.render_views(g, palette, pictures.vr.ring_cameras(3, (30.0,), g.shape, azimuth_offset=30.0),
                                  size) for g in grids]
    pictures.save_row(os.path.join(workdir, "comparison.png"), rows[0], rows[1:])
    logging.info("dreamcraft: results in %s\n%s", os.path.join(workdir, "results.md"), "\n".join(lines[4:]))


def _write_json(path: str, data: Any) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)
