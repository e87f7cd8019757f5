from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from core.exceptions import DomainError
from leaderboard import publishing
from leaderboard.models import Outcome, PairCount, PublishJob, Release, ReleaseRow


@admin.register(PairCount)
class PairCountAdmin(admin.ModelAdmin):
    list_display = ["model_a", "model_b", "category", "model_a_wins", "model_b_wins", "ties"]
    list_filter = ["category"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Published releases are never edited or deleted, not even by staff."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Outcome)
class OutcomeAdmin(ReadOnlyAdmin):
    """The outcome log is append-only: readable here, never added, edited or deleted."""

    list_display = ["id", "model_a", "model_b", "winner", "category", "created_at"]
    list_filter = ["result", "category"]
    list_select_related = ["model_a", "model_b"]


class PublishForm(forms.Form):
    category = forms.CharField(max_length=50, required=False, help_text="Empty: overall board.")
    method = forms.ChoiceField(
        choices=[("", "configured default"), *((m, m) for m in publishing.RELEASE_METHODS)],
        required=False,
        help_text="elo replays the ordered vote log; bt and davidson fit the pair counts.",
    )
    force = forms.BooleanField(required=False, help_text="Publish even if nothing changed.")


class ReleaseRowInline(admin.TabularInline):
    model = ReleaseRow
    fields = ["position", "rank", "rank_ub", "model", "rating", "ci_lower", "ci_upper", "votes"]
    readonly_fields = fields
    can_delete = False
    extra = 0
    max_num = 0


@admin.register(Release)
class ReleaseAdmin(ReadOnlyAdmin):
    list_display = ["number", "category", "created_at", "method", "counted_votes", "model_count"]
    list_filter = ["category", "method"]
    exclude = ["input_counts", "csv_text"]
    readonly_fields = [
        "number",
        "category",
        "created_at",
        "method",
        "params",
        "input_digest",
        "vote_count",
        "last_vote_id",
        "counted_votes",
        "model_count",
        "code_version",
        "changes",
        "diagnostics",
    ]
    inlines = [ReleaseRowInline]
    change_list_template = "admin/leaderboard/release/change_list.html"
    actions = ["publish_selected_categories"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Release]:
        return super().get_queryset(request).defer("input_counts", "csv_text", "charts")

    def get_urls(self) -> list[URLPattern]:
        publish = path(
            "publish/",
            self.admin_site.admin_view(self.publish_view),
            name="leaderboard_release_publish",
        )
        return [publish, *super().get_urls()]

    def publish_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = PublishForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                method = form.cleaned_data["method"]
                job = publishing.request_publish(
                    category=form.cleaned_data["category"].strip(),
                    force=form.cleaned_data["force"],
                    overrides={"method": method} if method else None,
                    requested_by=request.user,
                )
            except DomainError as error:
                messages.error(request, error.message)
            else:
                job.refresh_from_db()
                messages.success(request, f"Publish job {job.pk} queued ({job.status}).")
                return HttpResponseRedirect(reverse("admin:leaderboard_publishjob_changelist"))
        context = {**self.admin_site.each_context(request), "form": form, "title": "Publish"}
        return TemplateResponse(request, "admin/leaderboard/release/publish.html", context)

    @admin.action(description="Publish a new release of the selected releases' categories")
    def publish_selected_categories(
        self, request: HttpRequest, queryset: QuerySet[Release]
    ) -> None:
        for category in sorted(set(queryset.values_list("category", flat=True))):
            job = publishing.request_publish(
                category=category, force=True, requested_by=request.user
            )
            self.message_user(request, f"Publish job {job.pk} queued for {category or 'overall'}.")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Actions need change permission on the changelist; the objects stay read-only.
        return obj is None and bool(request.user.is_staff)


@admin.register(PublishJob)
class PublishJobAdmin(ReadOnlyAdmin):
    list_display = ["id", "category", "force", "status", "release", "created_at", "finished_at"]
    list_filter = ["status", "category"]
    readonly_fields = [f.name for f in PublishJob._meta.fields]
