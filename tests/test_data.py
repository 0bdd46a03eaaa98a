"""The synthetic scenes: deterministic, balanced, and their ground truth matches their pixels."""
import torch

from cam_lib import data


def test_shape_scenes_are_deterministic_and_seeded():
    first, again, other = (data.make_shape_scenes(40, seed) for seed in (3, 3, 4))
    assert torch.equal(first.images, again.images) and torch.equal(first.masks, again.masks)
    assert not torch.equal(first.images, other.images)


def test_shape_scenes_are_balanced_and_normalised():
    scenes = data.make_shape_scenes(500, seed=0)
    counts = torch.bincount(scenes.labels, minlength=len(data.SHAPE_CLASSES))
    assert counts.min() == counts.max() == 50
    assert scenes.images.shape == (500, 3, data.IMAGE_SIZE, data.IMAGE_SIZE)
    assert scenes.images.mean((0, 2, 3)).abs().max() < 0.15  # zero is the mean colour
    assert ((scenes.n_instances == 2).float().mean() - 0.2).abs() < 0.08


def test_masks_and_boxes_agree():
    scenes = data.make_shape_scenes(200, seed=1)
    assert scenes.masks.any((1, 2)).all()  # every scene shows its object
    for index in range(200):
        boxes = scenes.boxes[index, :scenes.n_instances[index]]
        inside = data._mask_of_boxes(boxes, data.IMAGE_SIZE)
        assert not (scenes.masks[index] & ~inside).any()  # the mask lies within the boxes


def test_vqa_scenes_answer_their_questions():
    scenes = data.make_vqa_scenes(300, seed=2)
    vocabulary, answers = data.QUESTION_VOCABULARY, data.ANSWER_VOCABULARY
    checked = 0
    for index in range(300):
        words = vocabulary.decode(scenes.questions[index]).split()
        shapes, colours = scenes.object_shapes[index], scenes.object_colours[index]
        answer = answers.tokens[scenes.answers[index]]
        if words[:2] == ["how", "many"]:
            shape = data.VQA_SHAPES[[p for p in data._VQA_PLURALS].index(words[2])]
            assert int(answer) == (shapes == data.VQA_SHAPES.index(shape)).sum().item()
            checked += 1
        elif words[:3] == ["what", "colour", "is"]:
            shape = data.VQA_SHAPES.index(words[4])
            assert answer == data.VQA_COLOURS[colours[shapes == shape][0]]
            checked += 1
        assert scenes.evidence_masks[index].any() or answer in ("0", "no")  # nothing there, nothing to show
    assert checked > 50


def test_vocabulary_round_trip_and_clear_error():
    question = "what colour is the circle ?"
    assert data.QUESTION_VOCABULARY.decode(data.QUESTION_VOCABULARY.encode(question)) == question
    try:
        data.QUESTION_VOCABULARY.encode("what is a dog ?")
    except ValueError as error:
        assert "dog" in str(error)
    else:
        raise AssertionError("unknown words must be refused")


def test_image_folder_with_boxes(tmp_path):
    from PIL import Image
    (tmp_path / "cat").mkdir()
    Image.new("RGB", (100, 50), (255, 0, 0)).save(tmp_path / "cat" / "a.png")
    (tmp_path / "boxes.csv").write_text("path,x0,y0,x1,y1\ncat/a.png,0,0,50,25\n")
    sample = data.ImageFolderDataset(tmp_path, size=32, boxes_csv=tmp_path / "boxes.csv")[0]
    assert sample["image"].shape == (3, 32, 32) and sample["label"] == 0
    assert sample["mask"][:16, :16].all() and not sample["mask"][16:, 16:].any()
