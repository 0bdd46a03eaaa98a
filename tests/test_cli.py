"""The command line writes an overlay PNG for a generated scene and for a user's image."""
import torch
from PIL import Image

from cam_lib.__main__ import main


def test_explain_a_generated_scene(tmp_path):
    out = tmp_path / "map.png"
    assert main(["explain", "--model", "shapes-vgg", "--method", "lift", "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 100


def test_explain_a_users_image(tmp_path):
    picture = tmp_path / "mine.png"
    Image.fromarray((torch.rand(80, 120, 3) * 255).byte().numpy()).save(picture)
    out = tmp_path / "map.png"
    assert main(["explain", "--model", "shapes-resnet", "--image", str(picture), "--method", "gradcam",
                 "--out", str(out)]) == 0
    assert out.exists()


def test_explain_a_vqa_scene(tmp_path, capsys):
    out = tmp_path / "vqa.png"
    assert main(["explain", "--model", "vqa-basic", "--index", "3", "--out", str(out)]) == 0
    assert "question:" in capsys.readouterr().out
