"""Diffusion-blended votes of hdl_label and the new labeling options on the relabel command line."""
import numpy as np
import pytest
import torch

from hdl.labeling import hdl_label
from hdl.relabel import relabel
from hdl.relabel_cli import main
from tests.test_labeling import PLAIN, _star
from tests.test_relabel import blobs


def _diffusion(row0):
    z = torch.zeros(4, 3)
    z[0] = torch.tensor(row0)
    return z


PLAIN = {name: value for name, value in PLAIN.items() if name != "diffusion_weight"}


@pytest.mark.parametrize("beta,expected", [(0.0, 1), (0.2, 1), (0.5, 0), (1.0, 0)])
def test_blend_on_paper(beta, expected):
    # sample 0's labeled neighbours vote 0, 1, 1 (uniform weights): shares (1/3, 2/3, 0); its
    # diffusion posterior is (0.9, 0.05, 0.05).  beta 0.2: class 0 scores 0.8/3 + 0.18 = 0.447,
    # class 1 0.8 * 2/3 + 0.01 = 0.543 -> 1; beta 0.5: 0.617 against 0.358 -> 0
    sims, idx, y = _star([0, 1, 1])
    res = hdl_label(sims, idx, y, 3, k=3, weighting="uniform", diffusion_weight=beta,
                    diffusion=_diffusion([0.9, 0.05, 0.05]), **PLAIN)
    assert int(res.labels[0]) == expected
    assert float(res.agreement[0]) == pytest.approx(1 / 3 if expected == 0 else 2 / 3)


def test_blend_only_chooses_among_voted_classes():
    # class 2 has the whole diffusion mass but no labeled neighbour voted for it
    sims, idx, y = _star([0, 1, 1])
    res = hdl_label(sims, idx, y, 3, k=3, weighting="uniform", diffusion_weight=1.0,
                    diffusion=_diffusion([0.0, 0.1, 0.9]), **PLAIN)
    assert int(res.labels[0]) == 1


def test_blend_computes_its_own_diffusion_and_checks_inputs():
    sims, idx, y = _star([0, 1, 1])
    own = hdl_label(sims, idx, y, 3, k=3, diffusion_weight=0.5, **PLAIN)
    assert own.labels[0] in (0, 1)
    with pytest.raises(ValueError, match="diffusion must have shape"):
        hdl_label(sims, idx, y, 3, k=3, diffusion_weight=0.5, diffusion=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="'diffusion_weight'"):
        hdl_label(sims, idx, y, 3, k=3, diffusion_weight=1.5)


def test_cli_passes_the_new_options(tmp_path):
    x, labels, truth = blobs(seed=3)
    np.save(tmp_path / "emb.npy", x)
    np.save(tmp_path / "labels.npy", labels)
    out = tmp_path / "out.csv"
    flags = ["--min-pairs", "5", "--diffusion-weight", "0.5", "--diffusion-alpha", "0.8",
             "--class-prior", "em"]
    assert main(["--embeddings", str(tmp_path / "emb.npy"), "--labels", str(tmp_path / "labels.npy"),
                 "--k-max", "10", "--backend", "torch", "--out", str(out), *flags]) == 0
    direct = relabel(x, labels, k_max=10, backend="torch", min_pairs=5, diffusion_weight=0.5,
                     diffusion_alpha=0.8, class_prior="em")
    written = np.loadtxt(out, delimiter=",", skiprows=1, usecols=1, dtype=np.int64)
    assert written.tolist() == direct.labels.tolist()
