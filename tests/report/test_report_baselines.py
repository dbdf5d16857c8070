"""Plain baselines of fractal variants (what AlterNNFN --baselines generates)."""
from ab.gpt.brute.fract.space.baselines import baselines_for, deepest_column, plain
from ab.gpt.brute.fract.space.spec import ArchSpec

F = ArchSpec(depth=2, columns=3, channels=(8, 16), layers=("conv3x3", "bn", "relu", "dropout"), dropout=0.2)


def test_plain_baseline_keeps_the_ops_and_widths():
    p = plain(F, 10)
    assert (p.kind, p.columns, p.plain_layers, p.depth) == ("plain", 1, 10, 2)
    assert (p.layers, p.channels, p.dropout, p.pool, p.head) == (F.layers, F.channels, F.dropout, F.pool, F.head)
    assert plain(F.replace(depth=6, channels=(8,) * 6), 5).plain_layers == 6  # at least one op per block


def test_deepest_column_has_the_deepest_path():
    assert deepest_column(F).plain_layers == 2 * 2 ** 2


def test_baselines_for_several_variants_are_unique():
    one_column = F.replace(columns=1, local_drop=0.0, global_drop=0.0)
    out = list(baselines_for([F, F.replace(join="max"), one_column, plain(F, 5)]))
    assert [b.plain_layers for b in out] == [5, 10, 20, 40, 8]  # shared ones once; none for plain or C=1 extras
    assert len({b.spec_hash for b in out}) == len(out)
