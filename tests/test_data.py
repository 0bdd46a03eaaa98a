"""The synthetic scenes: deterministic, balanced, and their ground truth matches their pixels."""
import io

import pytest
import torch

from cam_lib import data, metrics


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
        inside = metrics.boxes_to_masks([boxes], (data.IMAGE_SIZE, data.IMAGE_SIZE))[0].bool()
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


def test_load_image_resizes_and_normalises(tmp_path):
    from PIL import Image
    Image.new("RGB", (100, 50), (255, 0, 0)).save(tmp_path / "a.png")
    image, size = data.load_image(tmp_path / "a.png", 32, data.IMAGENET_NORMALIZATION)
    assert image.shape == (3, 32, 32) and size == (100, 50)
    torch.testing.assert_close(data.IMAGENET_NORMALIZATION.denormalize(image)[:, 0, 0], torch.tensor([1.0, 0, 0]))


def test_load_image_refuses_a_file_that_is_not_an_image(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    for source in (tmp_path / "notes.txt", io.BytesIO(b"%PDF-1.4 not an image either")):
        with pytest.raises(ValueError, match="not an image file PIL can read"):
            data.load_image(source, 32, data.IMAGENET_NORMALIZATION)


def _reference_answer(words, shapes, colours, columns):
    """The answer and the evidence objects, worked out in plain Python from the object table."""
    objects = [(shape, colour, column) for shape, colour, column in zip(shapes, colours, columns) if shape >= 0]
    shape_of = {name: i for i, name in enumerate(data.VQA_SHAPES)}
    colour_of = {name: i for i, name in enumerate(data.VQA_COLOURS)}
    if words[:2] == ["how", "many"]:
        shape = data._VQA_PLURALS.index(words[2])
        found = [i for i, o in enumerate(objects) if o[0] == shape]
        return str(len(found)), found
    if words[:3] == ["what", "colour", "is"]:
        (found,) = [i for i, o in enumerate(objects) if o[0] == shape_of[words[4]]]
        return data.VQA_COLOURS[objects[found][1]], [found]
    if words[:3] == ["what", "shape", "is"]:
        (found,) = [i for i, o in enumerate(objects) if o[1] == colour_of[words[4]]]
        return data.VQA_SHAPES[objects[found][0]], [found]
    if words[:2] == ["is", "there"]:
        colour, shape = colour_of[words[3]], shape_of[words[4]]
        matches = [i for i, o in enumerate(objects) if o[:2] == (shape, colour)]
        return ("yes", matches) if matches else ("no", None)
    assert words[:4] == ["what", "is", "left", "of"]
    (reference,) = [i for i, o in enumerate(objects) if o[0] == shape_of[words[5]]]
    nearest = max(o[2] for o in objects if o[2] < objects[reference][2])
    (found,) = [i for i, o in enumerate(objects) if o[2] == nearest]
    return data.VQA_SHAPES[objects[found][0]], [reference, found]


def test_every_question_type_has_the_unique_answer_of_its_scene():
    scenes = data.make_vqa_scenes(400, seed=5)
    assert set(scenes.question_types.tolist()) == set(range(len(data.QUESTION_TYPES)))
    cell = data.IMAGE_SIZE // data._GRID
    for index in range(400):
        words = data.QUESTION_VOCABULARY.decode(scenes.questions[index]).split()
        columns = (scenes.object_centres[index, :, 0] // cell).long().tolist()
        answer, evidence = _reference_answer(words, scenes.object_shapes[index].tolist(),
                                             scenes.object_colours[index].tolist(), columns)
        assert data.ANSWER_VOCABULARY.tokens[scenes.answers[index]] == answer, words
        if evidence is None:  # "no": the evidence is whatever shares the shape or the colour
            continue
        x, y = scenes.object_centres[index].long().unbind(-1)
        centre_in_evidence = scenes.evidence_masks[index][y, x]
        present = scenes.object_shapes[index] >= 0
        expected = torch.zeros_like(present)
        expected[evidence] = True
        assert torch.equal(centre_in_evidence[present], expected[present]), words


def test_shape_scene_boxes_are_tight_and_ordered():
    scenes = data.make_shape_scenes(100, seed=6)
    for index in range(100):
        for x0, y0, x1, y1 in scenes.boxes[index, :scenes.n_instances[index]].tolist():
            assert 0 <= x0 < x1 <= data.IMAGE_SIZE and 0 <= y0 < y1 <= data.IMAGE_SIZE
            mask = scenes.masks[index]
            assert mask[y0:y1, x0].any() and mask[y0:y1, x1 - 1].any()  # tight: edges touch the object
            assert mask[y0, x0:x1].any() and mask[y1 - 1, x0:x1].any()


def test_normalisation_round_trip_and_denormalised_range():
    images = data.make_shape_scenes(8, seed=0).images
    pixels = data.denormalize(images)
    assert pixels.min() >= 0 and pixels.max() <= 1
    assert torch.allclose(data.normalize(pixels), images, atol=1e-5)


def test_lookalike_scenes_are_seeded_balanced_and_normalised():
    first, again = data.make_lookalike_scenes(400, 3), data.make_lookalike_scenes(400, 3)
    assert torch.equal(first.images, again.images) and torch.equal(first.boxes, again.boxes)
    counts = torch.bincount(first.labels, minlength=len(data.LOOKALIKE_CLASSES))
    assert len(data.LOOKALIKE_CLASSES) >= 20 and counts.min() == counts.max() == 20
    assert first.images.mean((0, 2, 3)).abs().max() < 0.15 and (first.images.std((0, 2, 3)) - 1).abs().max() < 0.15


def test_lookalike_classes_need_all_three_attributes():
    colour, texture, shape = data.lookalike_attributes(torch.arange(len(data.LOOKALIKE_CLASSES)))
    names = [name.split() for name in data.LOOKALIKE_CLASSES]
    assert [data.LOOKALIKE_COLOURS[c] for c in colour] == [n[0] for n in names]
    assert [("solid", "striped")[t] for t in texture] == [n[1] for n in names]
    for fixed in ((colour, texture), (colour, shape), (texture, shape)):  # no two attributes decide the class
        pairs = torch.stack(fixed, 1)
        assert (pairs.unique(dim=0, return_counts=True)[1] >= 2).all()


def test_lookalike_masks_are_the_visible_class_pixels():
    scenes = data.make_lookalike_scenes(300, seed=1)
    area = scenes.masks.sum((1, 2)).float()
    assert (area > 0).all()  # an occluder never hides the whole object
    shapes = data.make_shape_scenes(300, seed=1)
    assert area.median() < 0.6 * shapes.masks.sum((1, 2)).float().median()  # smaller objects than the shape scenes
    for index in range(300):
        boxes = scenes.boxes[index, :scenes.n_instances[index]]
        inside = metrics.boxes_to_masks([boxes], (data.IMAGE_SIZE, data.IMAGE_SIZE))[0].bool()
        assert not (scenes.masks[index] & ~inside).any()


def test_lookalike_distractors_are_never_a_class():
    generator = torch.Generator().manual_seed(0)
    distractors = data._lookalike_distractor(5000, generator)
    looks_like_a_class = (distractors.shape < 5) & (distractors.texture != data.CHECKED)
    colours = distractors.colour[looks_like_a_class]
    hue_of = data._hsv(torch.tensor(data.LOOKALIKE_HUES), torch.ones(2), torch.ones(2))
    # a class colour has R = value and G, B below; the distractors' colours never sit within the class hues
    distance = torch.cdist(colours / colours.amax(1, keepdim=True), hue_of).amin(1)
    assert distance.min() > 0.2 and looks_like_a_class.sum() > 500
