import pytest
import torch
from diffusers import SD3Transformer2DModel

from hprune.cli import main
from hprune.core.errors import HpruneError
from hprune.folders import load, save
from hprune.model.pos_embed import crop_grid, crop_pos_embed
from hprune.model.testing import dummy_inputs, tiny_flux, tiny_sd3


def _out(model, height, width):
    inputs = dummy_inputs(model)
    inputs["hidden_states"] = torch.randn(2, 4, height, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model(**inputs)[0]


@pytest.mark.parametrize("full,max_px,ppp,side", [(192, 1024, 16, 64), (192, 1040, 16, 66), (16, 9, 2, 6), (15, 9, 2, 5)])
def test_the_kept_grid_covers_the_size_with_the_tables_parity(full, max_px, ppp, side):
    assert crop_grid(full, max_px, ppp) == side


def test_a_cropped_table_gives_the_same_output_for_every_size_it_keeps():
    # tiny SD3: a 16 x 16 position grid, 2 pixels of latent per patch; keep latents up to 10 x 10
    model = tiny_sd3()
    before = {hw: _out(model, *hw) for hw in [(10, 10), (4, 10), (10, 6), (2, 2)]}
    assert crop_pos_embed(model, 10 * 8, vae_scale_factor=8) == 6  # 5 patches, rounded to the table's parity
    assert model.pos_embed.pos_embed.shape == (1, 36, model.pos_embed.pos_embed.shape[-1])
    assert model.config.pos_embed_max_size == 6
    for hw, out in before.items():
        assert torch.equal(_out(model, *hw), out), hw
    with pytest.raises(ValueError, match="cannot be greater"):
        _out(model, 14, 14)


def test_an_uncentred_crop_would_change_the_output():
    # the test above must be able to fail: the same size cut from the table's corner differs
    model = tiny_sd3()
    out = _out(model, 10, 10)
    table = model.pos_embed.pos_embed.reshape(1, 16, 16, -1)
    model.pos_embed.pos_embed = table[:, :6, :6].reshape(1, 36, -1).clone()
    model.pos_embed.pos_embed_max_size = 6
    assert not torch.equal(_out(model, 10, 10), out)


def test_the_crop_survives_save_and_load_with_hprune_and_plain_diffusers(tmp_path):
    model = tiny_sd3()
    crop_pos_embed(model, 80)
    out = _out(model, 8, 8)
    save(model, tmp_path / "m")
    again = load(tmp_path / "m")
    assert again.pos_embed.pos_embed.shape == model.pos_embed.pos_embed.shape
    assert torch.equal(_out(again, 8, 8), out)
    plain = SD3Transformer2DModel.from_pretrained(tmp_path / "m")
    assert torch.equal(_out(plain, 8, 8), out)


def test_quantize_max_size_crops_and_records_it(tmp_path, capsys):
    tiny_sd3().save_pretrained(tmp_path / "m")
    assert main(["quantize", str(tmp_path / "m"), "--backend", "w4fp8", "--max-size", "48", "--device", "cpu",
                 "--out", str(tmp_path / "q")]) == 0
    model = load(tmp_path / "q")
    assert model.config.pos_embed_max_size == 4  # 48 px / 16 = 3 patches, rounded to the even 16
    assert main(["quantize", str(tmp_path / "m"), "--max-size", "4000", "--device", "cpu",
                 "--out", str(tmp_path / "big")]) == 1
    assert "larger than this model draws" in capsys.readouterr().err
    assert not (tmp_path / "big").exists()


def test_flux_has_no_table_to_crop():
    with pytest.raises(HpruneError, match="no position-embedding table"):
        crop_pos_embed(tiny_flux(), 512)


def test_a_shapes_teacher_is_pixel_space_and_keeps_the_size_it_draws(tmp_path, capsys):
    # shapes-sd3 draws 64 px in pixel space (patch 4): 16 patches a side, its whole table
    assert main(["quantize", "shapes-sd3", "--backend", "w4fp8", "--max-size", "32", "--device", "cpu",
                 "--out", str(tmp_path / "small")]) == 1
    assert "below the 64 pixels this pipeline always draws" in capsys.readouterr().err
    assert not (tmp_path / "small").exists()
    assert main(["quantize", "shapes-sd3", "--backend", "w4fp8", "--max-size", "64", "--device", "cpu",
                 "--out", str(tmp_path / "q")]) == 0
    assert load(tmp_path / "q").config.pos_embed_max_size == 16


def test_a_cropped_pipeline_refuses_its_too_big_default_size_before_drawing():
    from hprune.model.sampling import check_size
    from hprune.model.testing import tiny_pipeline

    pipe = tiny_pipeline("sd3")
    check_size(pipe, None)  # the whole table: the default size fits
    crop_pos_embed(pipe.transformer, pipe.vae_scale_factor * 2, pipe.vae_scale_factor)
    largest = pipe.transformer.config.pos_embed_max_size * pipe.vae_scale_factor * 2
    assert pipe.default_sample_size * pipe.vae_scale_factor > largest
    with pytest.raises(HpruneError, match=f"pass --size {largest} or less"):
        check_size(pipe, None)
    check_size(pipe, largest)
