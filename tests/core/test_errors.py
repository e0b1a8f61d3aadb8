from hprune.core.errors import out_of_memory_message, unallocated_gib

# torch 2.11's message from a FLUX.1 DDP step at batch 2 (results/scale_logs/scale-flux-scaling.log)
FRAGMENTED = ("CUDA out of memory. Tried to allocate 216.00 MiB. GPU 0 has a total capacity of 139.80 GiB of which "
              "109.06 MiB is free. Including non-PyTorch memory, this process has 139.69 GiB memory in use. Of the "
              "allocated memory 125.18 GiB is allocated by PyTorch, and 12.94 GiB is reserved by PyTorch but "
              "unallocated. If reserved but unallocated memory is large try setting "
              "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.")


def test_unallocated_gib_reads_torchs_message_in_its_units():
    assert unallocated_gib(FRAGMENTED) == 12.94
    assert unallocated_gib(FRAGMENTED.replace("12.94 GiB is reserved", "512.00 MiB is reserved")) == 0.5
    assert unallocated_gib("CUDA out of memory. Tried to allocate 20.00 GiB") is None


def test_fragmentation_leads_the_sentence_only_when_large_and_expandable_segments_are_off(monkeypatch):
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    message = out_of_memory_message("lower --batch-size (now 2)", RuntimeError(FRAGMENTED))
    assert "12.9 GiB reserved but unallocated" in message
    assert "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True" in message and message.endswith("lower --batch-size (now 2).")
    assert unallocated_gib("and . GiB is reserved by PyTorch but unallocated") is None
    small = RuntimeError(FRAGMENTED.replace("12.94 GiB is reserved", "300.00 MiB is reserved"))
    assert out_of_memory_message("k", small) == "the GPU ran out of memory; k."
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:512")
    assert "expandable_segments:True added to PYTORCH_CUDA_ALLOC_CONF" in out_of_memory_message("k", RuntimeError(FRAGMENTED))
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:512,expandable_segments:True")
    assert out_of_memory_message("k", RuntimeError(FRAGMENTED)) == "the GPU ran out of memory; k."
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF")
    monkeypatch.setenv("PYTORCH_ALLOC_CONF", "expandable_segments:True")  # torch's newer name
    assert out_of_memory_message("k", RuntimeError(FRAGMENTED)) == "the GPU ran out of memory; k."
