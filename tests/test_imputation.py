"""Noisy linear imputation: against grad-cam's ROAD reference, a dense solve of the definition, and its properties."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from cam_lib import imputation
from cam_lib.imputation import noisy_linear_imputation

road = pytest.importorskip("pytorch_grad_cam.metrics.road")
pytestmark = pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # grad-cam's NumPy calls

HEIGHT, WIDTH = 24, 28  # coarsens to 12x14, 6x7 and 3x4: odd sizes on the way down
FLOAT32_FLOOR = 1e-5  # float32 rounding of the system times its condition number; grad-cam solves in float64


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These systems are tiny: a second thread only adds waits, long ones when the CPUs are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_keep(fraction_removed: float, seed: int, size=(HEIGHT, WIDTH)) -> torch.Tensor:
    return (torch.rand(size, generator=torch.Generator().manual_seed(seed)) >= fraction_removed).float()


def disc_keep(size=(HEIGHT, WIDTH)) -> torch.Tensor:
    """A removed disc of about half the image, off-centre so that it does not touch the border."""
    rows, columns = torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij")
    return (((rows - 11.5) ** 2 + (columns - 13) ** 2) > 0.5 * size[0] * size[1] / torch.pi).float()


def border_keep() -> torch.Tensor:
    """A removed frame two pixels wide (corners included), and a 5x5 block in the top-left corner."""
    keep = torch.zeros(HEIGHT, WIDTH)
    keep[2:-2, 2:-2] = 1
    keep[:5, :5] = 0
    return keep


def test_matches_grad_cam_reference():
    generator = torch.Generator().manual_seed(0)
    noisy = torch.rand(3, HEIGHT, WIDTH, generator=generator)
    smooth = F.interpolate(torch.rand(1, 3, 4, 5, generator=generator), size=(HEIGHT, WIDTH), mode="bicubic")[0]
    masks = [random_keep(0.1, 1), random_keep(0.5, 2), random_keep(0.9, 3), disc_keep(), border_keep()]
    pairs = list(itertools.product([noisy, smooth], masks))
    images, keep = torch.stack([image for image, _ in pairs]), torch.stack([mask for _, mask in pairs])
    imputer = road.NoisyLinearImputer(noise=0)
    expected = torch.stack([imputer(image, mask) for image, mask in pairs])
    torch.testing.assert_close(noisy_linear_imputation(images, keep, noise=0), expected, rtol=0, atol=FLOAT32_FLOOR)


def dense_solution(image: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Solve ``sum_{n in N(i)} w_n (x_i - x_n) = 0`` for the removed ``i``, one row per removed pixel."""
    height, width = keep.shape
    removed = [(row, column) for row in range(height) for column in range(width) if keep[row, column] == 0]
    unknown = {pixel: index for index, pixel in enumerate(removed)}
    matrix = torch.zeros(len(removed), len(removed), dtype=torch.float64)
    rhs = torch.zeros(len(removed), image.shape[0], dtype=torch.float64)
    for (row, column), index in unknown.items():
        for down, right in itertools.product((-1, 0, 1), repeat=2):
            neighbour = (row + down, column + right)
            if (down, right) == (0, 0) or not (0 <= neighbour[0] < height and 0 <= neighbour[1] < width):
                continue
            weight = 1 / 6 if down == 0 or right == 0 else 1 / 12
            matrix[index, index] += weight
            if neighbour in unknown:
                matrix[index, unknown[neighbour]] -= weight
            else:
                rhs[index] += weight * image[:, neighbour[0], neighbour[1]]
    solution = image.clone()
    for (row, column), values in zip(removed, torch.linalg.solve(matrix, rhs)):
        solution[:, row, column] = values
    return solution


def test_matches_a_dense_solve_of_the_definition():
    image = torch.rand(2, 6, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    keep = random_keep(0.6, 5, (6, 7))
    keep[0, 0] = keep[-1, -1] = keep[0, -1] = 0
    imputed = noisy_linear_imputation(image[None], keep[None], noise=0, tolerance=1e-12)[0]
    torch.testing.assert_close(imputed, dense_solution(image, keep), rtol=0, atol=1e-10)


def test_kept_pixels_unchanged_and_noise_only_where_removed():
    images = torch.rand(2, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(6))
    keep = torch.stack([random_keep(0.5, 7), disc_keep()])
    kept = keep.bool()[:, None].expand_as(images)
    imputed = noisy_linear_imputation(images.where(kept, torch.nan), keep, noise=0.05)  # removed values unread
    assert torch.equal(imputed[kept], images[kept]) and imputed.isfinite().all()
    assert not torch.isclose(imputed[~kept], noisy_linear_imputation(images, keep, noise=0)[~kept]).all()


def test_constant_image_stays_constant():
    images = torch.full((1, 3, HEIGHT, WIDTH), 0.3)
    imputed = noisy_linear_imputation(images, border_keep()[None], noise=0)
    torch.testing.assert_close(imputed, images, rtol=0, atol=1e-6)


def test_harmonic_functions_are_fixed_points_away_from_the_border():
    """Linear ramps and the saddle ``x y`` satisfy the mean-value equation wherever all 8 neighbours exist."""
    rows, columns = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    images = torch.stack([0.02 * rows - 0.01 * columns, 0.001 * (rows - 16) * (columns - 16)])[:, None]
    keep = torch.ones(2, 32, 32)
    keep[:, 6:26, 8:24] = 0
    imputed = noisy_linear_imputation(images, keep, noise=0)
    torch.testing.assert_close(imputed, images, rtol=0, atol=1e-5)


def test_noise_has_the_requested_std_and_is_reproducible():
    images = torch.full((4, 3, 32, 32), 0.5)
    keep = torch.stack([random_keep(0.5, seed, (32, 32)) for seed in range(4)])
    removed = ~keep.bool()[:, None].expand_as(images)

    def impute(seed: int) -> torch.Tensor:
        return noisy_linear_imputation(images, keep, noise=0.1, generator=torch.Generator().manual_seed(seed))

    deviation = (impute(0) - 0.5)[removed]
    assert abs(deviation.std().item() - 0.1) < 0.01 and abs(deviation.mean().item()) < 0.01
    assert torch.equal(impute(0), impute(0)) and not torch.equal(impute(0), impute(1))


def test_batch_equals_one_image_at_a_time(monkeypatch):
    images = torch.rand(3, 2, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    keep = torch.stack([random_keep(0.3, 9), disc_keep(), border_keep()])
    monkeypatch.setattr(imputation, "CPU_CHUNK", 4 * HEIGHT * WIDTH)  # chunks of 4 channels cut image 1 in two
    batch = noisy_linear_imputation(images, keep, noise=0, tolerance=1e-12)
    monkeypatch.undo()
    single = torch.cat([noisy_linear_imputation(image[None], mask[None], noise=0, tolerance=1e-12)
                        for image, mask in zip(images, keep)])
    torch.testing.assert_close(batch, single, rtol=0, atol=1e-10)


def test_bool_and_float_masks_agree_and_nothing_removed_is_a_no_op():
    images = torch.rand(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(10))
    keep = random_keep(0.4, 11)[None]
    assert torch.equal(noisy_linear_imputation(images, keep, noise=0),
                       noisy_linear_imputation(images, keep.bool(), noise=0))
    assert torch.equal(noisy_linear_imputation(images, torch.ones_like(keep)), images)


def test_errors_name_the_problem_and_the_fix():
    images = torch.rand(2, 3, HEIGHT, WIDTH)
    keep = torch.stack([random_keep(0.5, 12), torch.zeros(HEIGHT, WIDTH)])
    with pytest.raises(ValueError, match=r"image\(s\) \[1\].*keep at least one pixel"):
        noisy_linear_imputation(images, keep)
    with pytest.raises(ValueError, match="keep must be"):
        noisy_linear_imputation(images, keep[:, None])
    with pytest.raises(RuntimeError, match=r"did not converge.*raise max_iterations"):
        noisy_linear_imputation(images[:1], disc_keep()[None], max_iterations=2)
    with pytest.raises(RuntimeError, match=r"relative residual nan.*finite"):
        noisy_linear_imputation(torch.full_like(images, torch.nan), keep[:1].expand(2, -1, -1))
