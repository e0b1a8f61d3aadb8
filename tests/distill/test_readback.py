"""hprune.distill.readback: a step's losses read one step late, the host never waiting for the GPU to drain."""

import time

import pytest
import torch

from hprune.distill.readback import LaggedReadback


def test_each_push_returns_the_step_before_it_and_flush_the_last():
    readback = LaggedReadback(torch.device("cpu"))
    assert readback.push(0, torch.tensor([1.0, 2.0])) is None
    step, values, seconds = readback.push(1, torch.tensor([3.0, 4.0]))
    assert (step, values) == (0, [1.0, 2.0]) and seconds >= 0
    assert readback.flush()[:2] == (1, [3.0, 4.0])
    assert readback.flush() is None


def test_the_values_are_those_pushed_even_when_the_tensor_changes_later():
    readback = LaggedReadback(torch.device("cpu"))
    values = torch.tensor([5.0])
    readback.push(0, values)
    values += 1
    assert readback.flush().values == [5.0]


def test_every_step_time_is_counted_once():
    readback = LaggedReadback(torch.device("cpu"))
    start = time.perf_counter()
    times = []
    for step in range(3):
        time.sleep(0.02)
        done = readback.push(step, torch.zeros(1))
        if done:
            times.append(done.seconds)
    times.append(readback.flush().seconds)
    assert len(times) == 3 and all(t >= 0.02 for t in times)
    assert sum(times) <= time.perf_counter() - start


def test_time_between_a_flush_and_restart_clock_is_no_step_s():
    readback = LaggedReadback(torch.device("cpu"))
    readback.push(0, torch.zeros(1))
    readback.flush()
    time.sleep(0.1)  # a checkpoint being saved
    readback.restart_clock()
    readback.push(1, torch.zeros(1))
    assert readback.flush().seconds < 0.1


@pytest.mark.gpu
def test_on_a_gpu_push_returns_while_the_gpu_still_runs_the_step():
    readback = LaggedReadback(torch.device("cuda"))
    stream = torch.cuda.current_stream()
    values = torch.tensor([1.5, 2.5], device="cuda")
    torch.cuda._sleep(2 * 10**9)  # about a second of GPU work queued before the values are read
    assert readback.push(0, values) is None
    assert not stream.query()  # the host did not wait for the GPU
    torch.cuda._sleep(2 * 10**9)
    step, got, _ = readback.push(1, values * 2)
    assert (step, got) == (0, [1.5, 2.5])
    assert not stream.query()  # step 1's work still runs: push waited for step 0 only
    assert readback.flush()[:2] == (1, [3.0, 5.0])
    torch.cuda._sleep(2 * 10**9)  # step 2's work: about a second of GPU time, queued before its values
    readback.push(2, values)
    assert readback.flush().seconds > 0.1  # GPU time between the steps' ends, by CUDA events
