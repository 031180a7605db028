"""Benchmark helpers that the closing figures depend on."""

from p2p_jax import benchmark

HLO = """
  %all-reduce.1 = f32[4,4,64,128]{3,2,1,0} all-reduce(f32[4,4,64,128]{3,2,1,0} %p), to_apply=%add
  %all-reduce.2 = (f32[10]{0}, /*index=1*/bf16[3,2]{1,0}) all-reduce(f32[10]{0} %a, %b)
  %ag = f32[8,16]{1,0} all-gather-start(f32[1,16]{1,0} %x), dimensions={0}
  %conv = f32[4,4,64,128]{3,2,1,0} convolution(%x, %y)
"""


def test_collective_bytes_sums_collective_outputs():
    expected = 4 * 4 * 64 * 128 * 4 + (10 * 4 + 6 * 2) + 8 * 16 * 4
    assert benchmark.collective_bytes(HLO) == expected
