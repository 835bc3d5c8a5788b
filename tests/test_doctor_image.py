"""`gantry doctor` checks the default image: on this host, or pullable (no pull happens)."""

from __future__ import annotations

from pathlib import Path

import docker
import docker.errors
import pytest

from config.settings import Settings
from gantry import doctor
from tests.registry import LocalRegistry, forget, local_registry
from tests.support import TEST_BASE_IMAGE

__all__ = ["local_registry"]


def settings_for(tmp_path: Path, image: str, registry: LocalRegistry | None = None) -> Settings:
    logins = {registry.host: registry.login} if registry is not None else {}
    return Settings(data_dir=tmp_path, default_image=image, registry_auth=logins)


async def test_an_image_on_this_host_passes(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    result = await doctor.check_default_image(settings_for(tmp_path, TEST_BASE_IMAGE))
    assert (result.status, result.detail) == ("ok", f"{TEST_BASE_IMAGE} is on this host")


async def test_a_pullable_image_passes_without_being_pulled(
    docker_client: docker.DockerClient, local_registry: LocalRegistry, tmp_path: Path
) -> None:
    image = local_registry.push_small_image(docker_client, "doctor")
    try:
        result = await doctor.check_default_image(settings_for(tmp_path, image, local_registry))
        assert result.status == "ok", result
        assert f"{local_registry.host} has it (sha256:" in result.detail
        assert "the first task pulls it" in result.detail
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(image)
    finally:
        forget(docker_client, image)


async def test_an_image_nobody_has_fails_with_the_registrys_answer(
    docker_client: docker.DockerClient, local_registry: LocalRegistry, tmp_path: Path
) -> None:
    image = local_registry.image("nowhere")
    result = await doctor.check_default_image(settings_for(tmp_path, image, local_registry))
    assert result.failed
    assert result.detail.startswith(f"{image} is not on this host, and could not pull image")
    assert "manifest unknown" in result.detail
    assert "GANTRY_DEFAULT_IMAGE" in result.fix
    # Without the credentials the registry refuses, and the doctor says which fix applies.
    refused = await doctor.check_default_image(settings_for(tmp_path, image))
    assert refused.failed
    assert "GANTRY_REGISTRY_AUTH" in refused.detail


async def test_a_missing_egress_proxy_image_fails_and_names_its_setting(
    docker_client: docker.DockerClient, local_registry: LocalRegistry, tmp_path: Path
) -> None:
    image = local_registry.image("no-proxy-here")
    settings = settings_for(tmp_path, TEST_BASE_IMAGE, local_registry)
    missing = settings.model_copy(update={"egress_proxy_image": image})
    result = await doctor.check_proxy_image(missing)
    assert result is not None
    assert result.failed
    assert (result.name, "GANTRY_EGRESS_PROXY_IMAGE" in result.fix) == ("proxy image", True)
    # Unset, or the default image itself: the default image's check covers it.
    assert await doctor.check_proxy_image(settings) is None
    same = settings.model_copy(update={"egress_proxy_image": TEST_BASE_IMAGE})
    assert await doctor.check_proxy_image(same) is None
