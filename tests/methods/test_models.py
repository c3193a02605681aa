"""imagededup's documented import paths: dedupd.utils.CustomModel and dedupd.utils.models."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the cnn extra installs torch")

from dedupd.errors import ModelUnavailableError  # noqa: E402

pytestmark = pytest.mark.cnn


def test_import_paths():
    import dedupd.utils
    from dedupd.cnn_models import CustomModel as Inner
    from dedupd.utils import CustomModel
    from dedupd.utils.models import DEFAULT_MODEL_NAME, EfficientNet, MobilenetV3, ViT

    assert CustomModel is Inner and dedupd.utils.models.ViT is ViT
    assert DEFAULT_MODEL_NAME == "default_model" == CustomModel().name
    assert (MobilenetV3.name, ViT.name, EfficientNet.name) == ("mobilenet_v3_small", "vit_b_16", "efficientnet_b4")
    name, model, transform = CustomModel("n", len, str)  # a named tuple, as the reference's
    assert (name, model, transform) == ("n", len, str)


@pytest.mark.parametrize(
    "cls_name,env,file",
    [("ViT", "DEDUPD_VIT_WEIGHTS", "vit_b_16_swag-9ac1b537.pth"),
     ("EfficientNet", "DEDUPD_EFFICIENTNET_WEIGHTS", "efficientnet_b4_rwightman-23ab8bcd.pth"),
     ("MobilenetV3", "DEDUPD_MOBILENET_WEIGHTS", "mobilenet_v3_small-047dcff4.pth")],
)
def test_missing_weights_name_what_to_configure(cls_name, env, file, tmp_path, monkeypatch):
    from dedupd.utils import models

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(env, raising=False)
    with pytest.raises(ModelUnavailableError) as info:
        getattr(models, cls_name)(allow_download=False)
    text = str(info.value)
    for needle in (env, file, str(tmp_path / "hub" / "checkpoints"), "allow_download"):
        assert needle in text
    monkeypatch.setenv(env, str(tmp_path / "nope.pth"))
    with pytest.raises(ModelUnavailableError, match=f"{env} points to .*nope.pth"):
        getattr(models, cls_name)(allow_download=False)


def test_mobilenet_class_matches_the_reference_class(tmp_path, monkeypatch, corpus_dir):
    """Same weights file in torchvision's cache: our MobilenetV3 and imagededup's give the same features."""
    from torchvision.models import mobilenet_v3_small

    from dedupd.cnn_models import mobilenet
    from dedupd.utils.models import MobilenetV3

    ref_models = pytest.importorskip("imagededup.utils.models")
    torch.manual_seed(1)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(mobilenet_v3_small(weights=None).state_dict(), cache / mobilenet.WEIGHTS_FILENAME)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(mobilenet.ENV_WEIGHTS, raising=False)
    ours, ref = MobilenetV3(allow_download=False), ref_models.MobilenetV3()
    from PIL import Image

    x = MobilenetV3.transform(Image.open(corpus_dir / "base" / "b0001.jpg").convert("RGB")).unsqueeze(0)
    with torch.inference_mode():
        np.testing.assert_allclose(ours(x).numpy(), ref(x).numpy(), rtol=1e-5, atol=1e-6)
    assert repr(MobilenetV3.transform) == repr(ref_models.MobilenetV3.transform)
