"""The best epoch (evaluation.BestEpoch) on hand-set weights and a scripted val curve: which
epoch it takes, the weights it keeps for any set of named networks, how they are put in
place for the end-of-run test, and how they travel through a checkpoint."""

from __future__ import annotations

import torch

from noisybench.checkpoint import read_tree, write_tree
from noisybench.evaluation import MAIN, BestEpoch


def linear(value: float) -> torch.nn.Linear:
    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.fill_(value)
        layer.bias.fill_(-value)
    return layer


def entry(epoch: int, val: float | None, test: float | None = None) -> dict:
    return {"epoch": epoch, "val_accuracy": val, "test_accuracy": test}


def test_the_first_epoch_of_the_highest_val_accuracy_is_kept_with_its_weights():
    networks = {MAIN: linear(1.0), "peer": linear(2.0)}
    best = BestEpoch()
    assert best.offer(entry(1, 0.5), networks) and best.unsaved
    networks[MAIN].weight.data.fill_(3.0)
    assert not best.offer(entry(2, 0.5), networks)  # a tie is no improvement: the earlier epoch stays
    assert not best.offer(entry(3, None), networks)  # not evaluated
    assert best.record == {"epoch": 1, "accuracy": 0.5, "test_accuracy": None}
    assert best.weights[MAIN]["weight"].eq(1.0).all() and best.weights["peer"]["bias"].eq(-2.0).all()
    assert best.offer(entry(4, 0.75, test=0.6), networks)
    assert best.record == {"epoch": 4, "accuracy": 0.75, "test_accuracy": 0.6} and best.weights is None  # tested


def test_kept_weights_are_in_place_for_the_block_only():
    networks = {MAIN: linear(1.0), "peer": linear(2.0)}
    best = BestEpoch()
    best.offer(entry(1, 0.5), networks)
    networks[MAIN].weight.data.fill_(7.0)
    networks["peer"].bias.data.fill_(8.0)
    with best.weights_in(networks):
        assert networks[MAIN].weight.eq(1.0).all() and networks["peer"].bias.eq(-2.0).all()
    assert networks[MAIN].weight.eq(7.0).all() and networks["peer"].bias.eq(8.0).all()


def test_kept_weights_survive_a_checkpoint_in_the_format_runs_have_always_written(tmp_path):
    """The main model's weights stay under ``best_weights`` (the key every checkpoint has);
    further networks, when kept, go under ``best_network_weights``."""
    main_only, both = BestEpoch(), BestEpoch()
    main_only.offer(entry(2, 0.5), {MAIN: linear(1.0)})
    both.offer(entry(3, 0.25), {MAIN: linear(1.0), "peer": linear(2.0)})
    assert list(main_only.state_dict()) == ["best_val", "best_weights"]
    for best, name in ((main_only, "main"), (both, "both")):
        write_tree(tmp_path, name, best.state_dict())
        restored = BestEpoch()
        restored.load_state_dict(read_tree(tmp_path, name))
        assert restored.record == best.record and sorted(restored.weights) == sorted(best.weights)
        for network, weights in best.weights.items():
            for key, tensor in weights.items():
                assert torch.equal(restored.weights[network][key], tensor)
    nothing = BestEpoch()
    nothing.load_state_dict({"best_val": {"epoch": None, "accuracy": None, "test_accuracy": None},
                             "best_weights": None})
    assert nothing.weights is None
