"""The release train: one version of several apps taken through waves of clusters, with soak time and gates between.

Each app carries its own release spec (blue-green, canary or rolling) without `target.cluster`/`target.namespace`:
every wave fills those in for each of its targets. Within a wave apps are released in `depends_on` order, at most
`max_concurrent_per_cluster` at a time in one cluster. A failed release stops the train; `on_failure` decides what
happens to the waves already promoted.
"""

from __future__ import annotations

from datetime import timedelta
from graphlib import CycleError, TopologicalSorter
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from deployflow.spec.analysis import Analysis
from deployflow.spec.common import (
    ContextName,
    DnsLabel,
    PositiveDuration,
    StrictModel,
    Target,
    describe_validation_error,
    image_tag,
)

# The template's target may name the container; the wave names everything else.
TEMPLATE_TARGET_FIELDS = frozenset({"container"})
MAX_RELEASES = 500


def _release_model() -> Any:
    # Imported late: the spec package's union imports this module.
    from deployflow.spec import parse_spec

    return parse_spec


def image_and_version(spec: StrictModel) -> tuple[str, str | None]:
    """The image a release deploys and its version label, wherever its strategy keeps them."""
    workload = getattr(spec, "workload", None)
    if workload is not None:
        return workload.image or "", workload.resolved_version(spec.target.container_name)  # type: ignore[attr-defined]
    return spec.image, spec.resolved_version  # type: ignore[attr-defined]


class WaveTarget(StrictModel):
    """One cluster and namespace a wave releases every app into."""

    cluster: ContextName = Field(description="kubeconfig context of the cluster")
    namespace: DnsLabel


class Soak(StrictModel):
    """Time the wave's releases run before the next wave starts, optionally judged by an analysis."""

    duration: PositiveDuration = Field(description="how long to wait after the wave's last release succeeded")
    analysis: Analysis | None = Field(
        default=None, description="measured in every target of the wave during the soak; a failure stops the train"
    )


class Wave(StrictModel):
    name: DnsLabel
    targets: list[WaveTarget] = Field(min_length=1, max_length=50)
    soak: Soak | None = None
    approval: bool = Field(default=False, description="after the soak, wait for promote before the next wave")

    @field_validator("targets")
    @classmethod
    def _distinct(cls, targets: list[WaveTarget]) -> list[WaveTarget]:
        seen = [(t.cluster, t.namespace) for t in targets]
        if len(set(seen)) != len(seen):
            raise ValueError("a cluster/namespace appears more than once")
        return targets


class TrainApp(StrictModel):
    name: DnsLabel = Field(description="the app; becomes target.app of each of its releases")
    release: dict[str, Any] = Field(
        description="a blue-green, canary or rolling spec without target.cluster and target.namespace"
    )
    depends_on: list[DnsLabel] = Field(
        default_factory=list, description="apps released (and succeeded) before this one in each target"
    )

    @field_validator("release")
    @classmethod
    def _template(cls, release: dict[str, Any]) -> dict[str, Any]:
        target = release.get("target", {})
        if not isinstance(target, dict):
            raise ValueError("target: must be a mapping (only container may be set; the wave sets the rest)")
        extra = sorted(set(target) - TEMPLATE_TARGET_FIELDS)
        if extra:
            raise ValueError(f"target: {extra} are set by the train's waves and apps; only container may be set")
        workload = release.get("workload")
        if isinstance(workload, dict) and workload.get("manifest") is not None:
            # A rollback re-releases the previous version's image, which a full manifest does not name alone.
            raise ValueError("workload.manifest: a train releases images; give workload.image")
        return release

    def previous_release(self, cluster: str, namespace: str, version: str) -> StrictModel:
        """This app's release of an earlier `version`: the same spec with that tag of the same image, going ahead at
        once (a blue-green gate or standby would hold a rollback up)."""
        spec = self.request(cluster, namespace)
        image, _ = image_and_version(spec)
        image = image[: -len(image_tag(image) or "") - 1] + f":{version}"
        update: dict[str, Any] = {"image": image, "version": version}
        workload = getattr(spec, "workload", None)
        if workload is not None:
            update = {"workload": workload.model_copy(update=update)}
        if "promotion" in type(spec).model_fields:
            update |= {"promotion": {"mode": "auto"}, "standby": timedelta(0)}
        return type(spec).model_validate({**spec.model_dump(exclude_unset=True), **update})

    def request(self, cluster: str, namespace: str) -> StrictModel:
        """This app's release spec in one target."""
        spec = {**self.release, "target": {**self.release.get("target", {}), "cluster": cluster,
                                           "namespace": namespace, "app": self.name}}
        model: StrictModel = _release_model()(spec)
        return model


class TrainRequest(StrictModel):
    """Input of the ReleaseTrain workflow (workflow id `train/<name>`)."""

    strategy: Literal["train"] = "train"
    name: DnsLabel
    version: str = Field(min_length=1, max_length=128, description="what the train carries, for people")
    apps: list[TrainApp] = Field(min_length=1, max_length=50)
    waves: list[Wave] = Field(min_length=1, max_length=50)
    max_concurrent_per_cluster: int = Field(default=1, ge=1, le=50)
    on_failure: Literal["rollback", "hold"] = Field(
        default="rollback",
        description="rollback: roll back the waves already promoted, newest first; hold: stop and wait for a person "
        "(promote goes on with the next wave, abort rolls back)",
    )

    @model_validator(mode="after")
    def _dependencies(self) -> TrainRequest:
        names = [a.name for a in self.apps]
        if len(set(names)) != len(names):
            raise ValueError(f"apps: app names must be unique: {names}")
        for i, app in enumerate(self.apps):
            unknown = sorted(set(app.depends_on) - set(names))
            if unknown:
                raise ValueError(f"apps.{i}.depends_on: unknown apps {unknown}")
        try:
            tuple(TopologicalSorter({a.name: a.depends_on for a in self.apps}).static_order())
        except CycleError as err:
            raise ValueError(f"apps.depends_on: a cycle: {' -> '.join(err.args[1])}") from None
        return self

    @field_validator("waves")
    @classmethod
    def _unique_waves(cls, waves: list[Wave]) -> list[Wave]:
        names = [w.name for w in waves]
        if len(set(names)) != len(names):
            raise ValueError(f"wave names must be unique: {names}")
        return waves

    @model_validator(mode="after")
    def _releases_valid(self) -> TrainRequest:
        """Every app's spec is checked in every target now, so a bad one fails before the first wave starts."""
        releases = len(self.apps) * sum(len(wave.targets) for wave in self.waves)
        if releases > MAX_RELEASES:
            # Each release is checked here and is a child workflow with its own events in the train's history.
            raise ValueError(f"apps, waves: {releases} releases (apps x targets); a train makes at most {MAX_RELEASES}")
        for i, app in enumerate(self.apps):
            for w, wave in enumerate(self.waves):
                for t, target in enumerate(wave.targets):
                    try:
                        app.request(target.cluster, target.namespace)
                    except ValidationError as err:
                        raise ValueError(
                            f"apps.{i}.release (in waves.{w}.targets.{t}): {describe_validation_error(err)}"
                        ) from None
                    except ValueError as err:
                        raise ValueError(f"apps.{i}.release: {err}") from None
            first = self.waves[0].targets[0]
            image, version = image_and_version(app.request(first.cluster, first.namespace))
            if image_tag(image) != version:
                # A rollback releases the previous version by its tag: the version must be the image tag.
                raise ValueError(f"apps.{i}.release: the version must be the image's tag in a train (got {version})")
        return self

    def workflow_id(self) -> str:
        return self.target.workflow_id()

    def order(self) -> list[str]:
        """The apps in an order that respects depends_on (spec order among independent apps)."""
        sorter = TopologicalSorter({a.name: a.depends_on for a in self.apps})
        position = {a.name: i for i, a in enumerate(self.apps)}
        done: list[str] = []
        sorter.prepare()
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=position.__getitem__)
            done.extend(ready)
            sorter.done(*ready)
        return done

    def app(self, name: str) -> TrainApp:
        return next(a for a in self.apps if a.name == name)

    @property
    def target(self) -> TrainTarget:
        """A stand-in target for the status, search attributes and clients: the train, named by its first target."""
        first = self.waves[0].targets[0]
        return TrainTarget(cluster=first.cluster, namespace=first.namespace, app=self.name)


class TrainTarget(Target):
    """Where a train is identified: its workflow id is `train/<name>`, not one app's lock."""

    def workflow_id(self) -> str:
        return f"train/{self.app}"
