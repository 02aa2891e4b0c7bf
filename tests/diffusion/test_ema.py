import torch

from sgmse_nc.diffusion.ema import ParameterEMA


def _module():
    m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    m[1].weight.requires_grad_(False)  # a frozen parameter is not averaged
    return m


def test_ema_update_follows_the_warmed_up_decay():
    m = _module()
    ema = ParameterEMA(m, decay=0.999)
    assert "1.weight" not in ema.names and len(ema.names) == 3
    start = m[0].weight.detach().clone()
    with torch.no_grad():
        m[0].weight.add_(1.0)
    ema.update(m)  # first update: decay = min(0.999, 2/11)
    d = 2 / 11
    assert torch.allclose(ema.shadow[0], d * start + (1 - d) * (start + 1.0))


def test_ema_swap_restores_raw_weights_and_state_round_trips():
    m = _module()
    ema = ParameterEMA(m, decay=0.9)
    raw = m[0].weight.detach().clone()
    with torch.no_grad():
        m[0].weight.mul_(3)
    for _ in range(5):
        ema.update(m)
    trained = m[0].weight.detach().clone()
    with ema.swapped_in(m):
        assert torch.equal(m[0].weight, ema.shadow[0])
        assert not torch.equal(m[0].weight, trained)
    assert torch.equal(m[0].weight, trained)
    other = ParameterEMA(_module(), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 5 and other.decay == 0.9
    assert torch.equal(other.shadow[0], ema.shadow[0]) and not torch.equal(other.shadow[0], raw)
