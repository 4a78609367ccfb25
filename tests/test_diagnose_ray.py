"""--engine ray gives what the local engine gives, on a local Ray instance of 2 workers (about 30 s)."""

import numpy as np
import pytest
from test_diagnose_models import own_model, photos

from explainers.diagnose import Settings, diagnose

ray = pytest.importorskip("ray")


def test_ray_engine_matches_the_local_engine(tmp_path):
    spec = own_model(tmp_path)
    data = photos(tmp_path / "data", per_class=2)
    options = Settings(methods=("gradcam", "layercam"))
    local = diagnose(data, spec, tmp_path / "local", options, quiet=True)
    distributed = diagnose(data, spec, tmp_path / "ray", options, engine="ray", workers=2, batch_size=1, quiet=True)
    assert not ray.is_initialized()  # the instance it started is stopped
    assert distributed["complete"] and distributed["images"] == local["images"] == 6
    assert local["misclassified"] and local["misclassified"] == distributed["misclassified"]
    for item in local["misclassified"]:
        for per_method in item["maps"].values():
            for where in per_method.values():
                with np.load(tmp_path / "local" / where["file"]) as a, np.load(tmp_path / "ray" / where["file"]) as b:
                    np.testing.assert_allclose(
                        a[where["key"]].astype(np.float32), b[where["key"]].astype(np.float32), atol=2e-3
                    )
    assert {k: v for k, v in local.items() if k != "misclassified"} == {
        k: v for k, v in distributed.items() if k != "misclassified"
    }
