"""Server-rendered pages: a model's card, scores, jobs and accounting; the analysis charts."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe

from contestants.models import Contestant
from submissions import analysis
from submissions.models import BenchmarkResult

COMPUTE_OPTIMAL_TOKENS_PER_PARAMETER = 20  # Hoffmann et al. 2022 (Chinchilla)


def model_detail(request: HttpRequest, name: str) -> HttpResponse:
    contestant = Contestant.objects.filter(name=name).select_related("owner").first()
    if contestant is None:
        raise Http404(f"no model {name!r}")
    jobs = list(contestant.jobs.prefetch_related("steps")[:10])
    ratio = contestant.tokens_per_parameter
    context = {
        "model": contestant,
        "benchmark": BenchmarkResult.objects.latest_for(contestant),
        "jobs": jobs,
        "running": any(not job.is_done for job in jobs),
        "optimal_ratio": COMPUTE_OPTIMAL_TOKENS_PER_PARAMETER,
        "ratio_vs_optimal": None if ratio is None else ratio / COMPUTE_OPTIMAL_TOKENS_PER_PARAMETER,
        "rating": analysis.latest_ratings().get(contestant.name),
    }
    return render(request, "submissions/model_detail.html", context)


def analysis_page(request: HttpRequest) -> HttpResponse:
    ratings = analysis.latest_ratings()
    fewshot, compute = analysis.analysis_points(ratings)
    curve = analysis.fit_saturating(fewshot)
    fewshot_svg = analysis.scatter_svg(
        fewshot, x_label="few-shot average", y_label="arena rating", curve=curve
    )
    compute_svg = analysis.scatter_svg(
        compute, x_label="training compute 6·N·D (FLOPs, log10)", y_label="arena rating", log_x=True
    )
    context = {
        "has_ratings": bool(ratings),
        "fewshot_svg": mark_safe(fewshot_svg),  # noqa: S308 - built with escaped labels
        "compute_svg": mark_safe(compute_svg),  # noqa: S308
        "curve": curve,
        "fewshot_points": fewshot,
        "compute_points": compute,
    }
    return render(request, "submissions/analysis.html", context)
