import pytest
import torch

from hprune.core.errors import HpruneError
from hprune.toy.prompts import VOCABULARY, words_of
from hprune.toy.splits import load_split
from hprune.toy.text_encoder import CLS, PAD, ShapesTextEncoder, split_words


def encoder(**kw):
    torch.manual_seed(0)
    return ShapesTextEncoder(vocabulary=VOCABULARY, max_length=16, width=32, num_layers=2, num_heads=2,
                             joint_attention_dim=24, pooled_projection_dim=40, **kw)


def test_tokenize_puts_cls_first_and_pads_the_rest():
    enc = encoder()
    ids = enc.tokenize(["a red circle", ""])
    assert ids.shape == (2, 16)
    assert ids[0, 0] == enc.index[CLS] and ids[1, 0] == enc.index[CLS]
    assert ids[0, 1:4].tolist() == [enc.index[w] for w in ("a", "red", "circle")]
    assert (ids[0, 4:] == enc.index[PAD]).all() and (ids[1, 1:] == enc.index[PAD]).all()


def test_unknown_word_is_named():
    with pytest.raises(HpruneError, match="unknown word 'magenta'"):
        encoder().tokenize(["a magenta circle"])


def test_too_long_prompt_is_an_error():
    with pytest.raises(HpruneError, match="at most 15"):
        encoder().tokenize([" ".join(["red"] * 16)])


def test_shapes_and_unseen_prompt_of_known_words():
    seq, pooled = encoder().encode(["a large dotted cyan diamond above a small red circle on a checkered background"])
    assert seq.shape == (1, 16, 24) and pooled.shape == (1, 40)
    assert torch.isfinite(seq).all()


def test_padding_is_masked_so_batch_mates_do_not_matter():
    enc = encoder().eval()
    alone = enc.encode(["two blue squares"])
    together = enc.encode(["two blue squares", "the digit 7 in white on a large red square"])
    torch.testing.assert_close(alone[1][0], together[1][0])
    torch.testing.assert_close(alone[0][0, :4], together[0][0, :4])


def test_different_prompts_give_different_embeddings():
    pooled = encoder().encode(["a red circle", "a blue circle"])[1]
    assert not torch.allclose(pooled[0], pooled[1])


def test_save_load_round_trip(tmp_path):
    enc = encoder()
    enc.save_pretrained(tmp_path)
    loaded = ShapesTextEncoder.from_pretrained(tmp_path)
    assert loaded.config.vocabulary == list(VOCABULARY)
    for a, b in zip(enc.encode(["a small striped green triangle"]), loaded.encode(["a small striped green triangle"])):
        torch.testing.assert_close(a, b)


def test_splitting_agrees_with_the_world():
    for prompt in load_split("val"):
        assert split_words(prompt) == words_of(prompt)


def test_needs_a_vocabulary():
    with pytest.raises(HpruneError, match="needs a vocabulary"):
        ShapesTextEncoder(vocabulary=())
