"""Evaluation reports as JSON (everything) and markdown (the tables a reader looks at)."""

from ntm_jax import files
from ntm_jax.data import shapes


def likelihood_table(results: dict) -> list:
  """Markdown rows of a held_out.evaluate result: one row per step count T."""
  prefixes = sorted({k.split("/", 1)[0] for k in results}, key=lambda p: (len(p), p))
  levels = sorted({k.split("/")[1] for k in results if "/level_" in k},
                  key=lambda name: int(name.split("_")[1]))
  if not any("nll_nats_per_dim" in k for k in results):  # flow matching
    return ["| held-out velocity MSE |", "|---|",
            *[f"| {results[p + '/fm_loss']:.4f} |" for p in prefixes]]
  columns = {"nll_nats_per_dim": "NLL nats/dim", "bits_per_dim": "bits/dim",
             "bits_per_8bit_dim": "bits/8-bit dim",  # pixels only, not latents
             "bound_x_t0_nats_per_dim": "bound on -log p(x_t0)"}
  columns = {k: v for k, v in columns.items() if f"{prefixes[0]}/{k}" in results}
  header = ["T", *columns.values()]
  rows = ["| " + " | ".join(header + [name.replace("_nats_per_dim", "") for name in levels]) +
          " |", "|" + "---|" * (len(header) + len(levels))]
  for p in prefixes:
    values = [results[f"{p}/{k}"] for k in columns]
    values += [results[f"{p}/{name}"] for name in levels]
    rows.append(f"| {p.removeprefix('eval_T')} | " + " | ".join(f"{v:.3f}" for v in values) +
                " |")
  return rows


def shapes_eval_table(entries: list, split: str) -> list:
  """Markdown rows of ShapesEval accuracies: one row per evaluated sampler."""
  entries = [e for e in entries if split in e]
  if not entries:
    return []
  kinds = [k for k in shapes.KINDS if k in entries[0][split]["per_category"]]
  rows = ["| sampler | T | " + " | ".join(kinds) + " | overall | blank samples |",
          "|---|---|" + "---|" * (len(kinds) + 2)]
  for e in entries:
    scores = e[split]["per_category"]
    blank = f"{e[split]['blank']:.3f}" if "blank" in e[split] else ""
    rows.append(f"| {e['sampler']} | {e['num_steps']} | " +
                " | ".join(f"{scores[k]:.3f}" for k in kinds) +
                f" | {e[split]['overall']:.3f} | {blank} |")
  return rows


def class_metrics_table(entries: list) -> list:
  """Markdown rows of class metrics: one row per evaluated sampler."""
  rows = ["| sampler | T | class accuracy | Frechet distance (classifier features) |",
          "|---|---|---|---|"]
  rows += [f"| {e['sampler']} | {e['num_steps']} | {e['class_accuracy']:.3f} | "
           f"{e['frechet_distance']:.3f} |" for e in entries]
  return rows


def _kid_cell(r: dict) -> str:
  """KID x 1e3 with its spread over subsets; where each subset is both whole sets, every draw is
  the same and the spread says nothing, so none is printed."""
  whole_sets = r["kid_subset_size"] >= max(r["fid_images"], r["fid_reference_images"])
  spread = " (whole sets)" if whole_sets else f" ± {1e3 * r['kid_std']:.1f}"
  return f"{1e3 * r['kid']:.1f}{spread}"


def fid_table(entries: list) -> list:
  """Markdown rows of Inception FID / KID on held-out captions: one row per sampler."""
  rows = ["| sampler | T | FID | KID x 1e3 | images (reference) |", "|---|---|---|---|---|"]
  rows += [f"| {e['sampler']} | {e['num_steps']} | {e['fid']:.1f} | "
           f"{_kid_cell(e)} | {e['fid_images']} "
           f"({e['fid_reference_images']}) |" for e in entries]
  return rows


def emoji_table(entries: list, split: str) -> list:
  """Markdown rows of the emoji report for the seen or held-out names: one row per sampler."""
  rows = ["| sampler | T | FID | KID x 1e3 | images (reference) | name top-1 | name top-5 | "
          "subcategory top-1 | images/s |", "|---|---|---|---|---|---|---|---|---|"]
  for e in entries:
    r = e[split]
    rows.append(f"| {e['sampler']} | {e['num_steps']} | {r['fid']:.1f} | "
                f"{_kid_cell(r)} | {r['fid_images']} "
                f"({r['fid_reference_images']}) | {r['name_top1']:.3f} | {r['name_top5']:.3f} | "
                f"{r['subcategory_top1']:.3f} | {e['images_per_s']:.1f} |")
  return rows


def emoji_bounds_lines(bounds: dict) -> list:
  """The retrieval judge's ceiling (real images, each left out of its own gallery) and floor."""
  rows = ["| queries | name top-1 | name top-5 | subcategory top-1 |", "|---|---|---|---|"]
  rows += [f"| {name.replace('_', ' ')} | {b['name_top1']:.3f} | {b['name_top5']:.3f} | "
           f"{b['subcategory_top1']:.3f} |" for name, b in bounds.items()]
  return rows


def classifier_note(metrics: dict) -> str:
  """What the class-metrics numbers are measured with, and the real-vs-real distance floor."""
  c = metrics["classifier"]
  return (f"Classifier trained here on {c['source']} ({c['steps']} steps): "
          f"{c['test_accuracy']:.4f} accuracy on {c['test_images']} held-out real images. The "
          f"distance is on its features, not Inception's (not FID); two real sets of "
          f"{metrics['reference_images']} images are {metrics['real_floor']:.3f} apart.")


def latent_lines(note: dict) -> list:
  """What a latent model's likelihood is measured in, and the autoencoder's own error."""
  h, w, c = note["latent_shape"]
  return [f"On autoencoder latents: NLL in latent nats/dim (D = {h}x{w}x{c} = {h * w * c} "
          f"normalized latents of {note['autoencoder_workdir']}, step "
          f"{note['autoencoder_step']}), not pixel nats. The autoencoder's held-out "
          f"reconstruction: PSNR {note['autoencoder_recon_psnr_db']:.2f} dB, MSE "
          f"{note['autoencoder_recon_mse']:.5f} (images in [-1, 1]).", ""]


def autoencoder_lines(report: dict) -> list:
  metrics = report["likelihood"]
  lines = ["## Held-out reconstruction (EMA parameters, latent means)", "",
           "| PSNR dB | MSE |", "|---|---|",
           f"| {metrics['eval/psnr_db']:.2f} | {metrics['eval/mse']:.5f} |"]
  ceiling = report.get("shapes_eval_ceiling")
  if ceiling:
    lines += ["", f"## ShapesEval ceiling ({ceiling['suite']}, {ceiling['prompts']} prompts x "
              f"{ceiling['samples_per_prompt']} renders)", "", "| images | split | overall |",
              "|---|---|---|"]
    lines += [f"| {images.replace('_', ' ')} | {split} | {ceiling[images][split]['overall']:.3f} |"
              for images in ("clean_renders", "reconstructions") for split in ("seen", "held_out")
              if split in ceiling[images]]
  return lines


def markdown(report: dict) -> str:
  lines = [f"# Evaluation at step {report['step']} ({report['method']})", ""]
  if report["method"] == "autoencoder":
    return "\n".join(lines + autoencoder_lines(report)) + "\n"
  lines += ["## Held-out likelihood (EMA parameters)", ""]
  if report.get("latent"):
    lines += latent_lines(report["latent"])
  lines += likelihood_table(report["likelihood"])
  if report.get("fid"):
    first = report["fid"]["samplers"][0]
    lines += ["", f"## Inception FID / KID ({first['fid_images']} held-out captions, one sample "
              f"each, guidance {first['guidance']:g})", "", *fid_table(report["fid"]["samplers"])]
  if report.get("shapes_eval"):
    first = report["shapes_eval"][0]
    lines += ["", f"## ShapesEval ({first['suite']}, {first['prompts']} prompts x "
              f"{first['samples_per_prompt']} samples, guidance {first['guidance']:g}, "
              f"t_min {first['t_min']:g})"]
    for split, title in (("seen", "Seen combinations"), ("held_out", "Held-out combinations")):
      table = shapes_eval_table(report["shapes_eval"], split)
      if table:
        lines += ["", f"### {title}", "", *table]
  if report.get("class_metrics"):
    metrics = report["class_metrics"]
    first = metrics["samplers"][0]
    lines += ["", f"## Class metrics ({first['samples_per_class']} samples per class, guidance "
              f"{first['guidance']:g}, t_min {first['t_min']:g})", "", classifier_note(metrics), "",
              *class_metrics_table(metrics["samplers"])]
  if report.get("emoji"):
    metrics = report["emoji"]
    first = metrics["samplers"][0]
    lines += ["", f"## Emoji ({first['samples_per_name']} samples per name, guidance "
              f"{first['guidance']:g}; judge: {metrics['judge']})"]
    for split, title in (("seen", "Seen names"), ("held_out", "Held-out names")):
      lines += ["", f"### {title}", "", *emoji_table(metrics["samplers"], split)]
    lines += ["", "### Retrieval judge: ceiling and floor", "",
              *emoji_bounds_lines(metrics["retrieval_bounds"])]
  return "\n".join(lines) + "\n"


def write(report: dict, stem: str) -> str:
  """Writes stem.json and stem.md; returns the JSON path."""
  files.write_json(stem + ".json", report)
  files.write_text(stem + ".md", markdown(report))
  return stem + ".json"
