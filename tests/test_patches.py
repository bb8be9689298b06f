"""Patch modes on phantoms with known answers: largest slice, centroid, channel counts,
square side from the ROI extent, box scaling, slice ranges, and ROI-first resampling."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from gastrorad.config.study import BBoxPatch, RoiSlicesPatch, Slice2DPatch, SlicesPatch, Stack25DPatch, Volume3DPatch
from gastrorad.preprocess import get_patch_mode, roi_from_bbox, roi_from_mask
from gastrorad.preprocess.patches import PatchRequest
from gastrorad.preprocess.roi import grid_around, resample_region

SPACING = (0.8, 0.8, 2.5)


def _phantom(kind="z"):
    """60x60x30 image: HU = 100 + 10 * z-index ('z') or HU = physical x in mm ('x')."""
    z, y, x = np.meshgrid(np.arange(30), np.arange(60), np.arange(60), indexing="ij")
    arr = 100.0 + 10.0 * z if kind == "z" else x * SPACING[0] + 5.0
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing(SPACING)
    img.SetOrigin((5.0, -3.0, 40.0))
    mask = np.zeros(arr.shape, np.uint8)
    mask[12, 20:30, 16:30] = 1        # largest: 10 x 14 px (8.0 x 11.2 mm), centroid x=22.5, y=24.5
    mask[11, 22:28, 18:26] = 1
    mask[13, 21:29, 18:28] = 1
    mask[10, 23:26, 20:24] = 1
    m = sitk.GetImageFromArray(mask)
    m.CopyInformation(img)
    return img, m, mask


def _req(patch, img, m, mask, spacing=None, normalize="none", window=(-3000.0, 3000.0)):
    return PatchRequest(image=img, mask=m, roi=roi_from_mask(mask, SPACING), patch=patch, spacing=spacing,
                        interpolation="linear", window=window, normalize=normalize)


def test_roi_measurements():
    _, _, mask = _phantom()
    roi = roi_from_mask(mask, SPACING)
    assert roi.largest_slice == 12
    assert roi.centroid == pytest.approx((22.5, 24.5, 12.0))
    assert roi.extent_mm == pytest.approx((11.2, 8.0))
    assert roi.bbox == (16, 20, 10, 29, 29, 13)
    with pytest.raises(ValueError, match="empty"):
        roi_from_mask(np.zeros((3, 3, 3)), SPACING)


def test_stack25d_channels_slices_and_side_native_grid():
    img, m, mask = _phantom("z")
    ps = get_patch_mode("stack25d")(_req(Stack25DPatch(context_slices=5, margin_mm=0.0, size=[32, 32]), img, m, mask))
    assert ps.array.shape == (12, 32, 32)  # S1: 11 CT slices + mask
    assert ps.channels[5] == "slice+0" and ps.channels[-1] == "mask"
    # Native grid: channel j holds slice 12 + (j - 5), whose HU is 100 + 10 * index.
    for j in range(11):
        assert np.allclose(ps.array[j], 100 + 10 * (7 + j), atol=1e-3)
    assert ps.meta["side_mm"] == pytest.approx(11.2)  # the larger in-plane extent, no margin
    # Square around the centroid and as wide as the ROI: the mask fills the rows it spans.
    assert ps.array[-1].mean() == pytest.approx(8.0 / 11.2, abs=0.08)


def test_stack25d_resampled_to_1mm_interpolates_between_slices():
    img, m, mask = _phantom("z")
    ps = get_patch_mode("stack25d")(_req(Stack25DPatch(context_slices=2, margin_mm=0.0, size=[16, 16], mask_channel=False),
                                         img, m, mask, spacing=(1.0, 1.0, 1.0)))
    centre = 100 + 10 * 12
    for j, dz in enumerate(range(-2, 3)):  # 1 mm apart = 0.4 slice = 4 HU
        assert np.allclose(ps.array[j], centre + 4.0 * dz, atol=1e-3)


def test_square_is_centred_on_the_roi_centroid():
    img, m, mask = _phantom("x")
    ps = get_patch_mode("stack25d")(_req(Stack25DPatch(context_slices=0, margin_mm=4.0, size=[33, 33], mask_channel=False),
                                         img, m, mask, spacing=(0.5, 0.5, 1.0)))
    centroid_x_mm = 5.0 + 22.5 * SPACING[0]
    assert ps.array[0, 16, 16] == pytest.approx(centroid_x_mm + 5.0 - 5.0 + 0.0, abs=0.3)
    assert ps.meta["side_mm"] == pytest.approx(11.2 + 8.0)


def test_slice2d_fixed_side_and_zscore():
    img, m, mask = _phantom("x")
    ps = get_patch_mode("slice2d")(_req(Slice2DPatch(side_mm=40.0, size=[20, 20]), img, m, mask,
                                        spacing=(1.0, 1.0, 1.0), normalize="zscore"))
    assert ps.array.shape == (1, 20, 20)
    assert ps.meta["grid_size"] == [40, 40, 1]
    assert ps.array.mean() == pytest.approx(0.0, abs=1e-5) and ps.array.std() == pytest.approx(1.0, abs=1e-4)


def test_bbox_scaling_square_and_orientation_independence(tmp_path):
    from gastrorad.preprocess import cut_patches
    def box_patches(image, box, patch):
        return cut_patches(image, patch, bbox=box, window=(-3000.0, 3000.0), normalize="none")
    img, _, _ = _phantom("z")
    box = (20, 25, 12, 29, 29, 12)  # 10 x 5 px = 8.0 x 4.0 mm on slice 12
    ps = box_patches(img, box, BBoxPatch(size=[24, 24]))
    assert ps.array.shape == (3, 24, 24)
    assert ps.meta["side_mm"] == pytest.approx(1.5 * 8.0)
    assert np.allclose(ps.array[0], 210) and np.allclose(ps.array[1], 220) and np.allclose(ps.array[2], 230)
    # The same box on a RAS-stored copy (indices of that file) gives the same patch.
    ras = sitk.DICOMOrient(img, "RAS")
    corners = [ras.TransformPhysicalPointToIndex(img.TransformIndexToPhysicalPoint(c)) for c in (box[:3], box[3:])]
    lo, hi = np.min(corners, axis=0), np.max(corners, axis=0)
    ps2 = box_patches(ras, (*lo, *hi), BBoxPatch(size=[24, 24]))
    assert np.allclose(ps.array, ps2.array, atol=1e-4)


def test_volume3d_as_slices_and_block():
    img, m, mask = _phantom("z")
    p = Volume3DPatch(as_slices=True, size=[16, 16], margin_mm=0.0)
    ps = get_patch_mode("volume3d")(_req(p, img, m, mask, window=(0.0, 400.0), normalize="zero_one"))
    assert ps.array.shape == (4, 1, 16, 16)  # slices 10..13 of the VOI
    assert np.allclose(ps.array[1, 0, 8, 8], (100 + 10 * 11) / 400.0, atol=1e-4)
    assert ps.array[0, 0, 0, 8] == pytest.approx(0.0)  # padded rows (10 x 14 box -> square) hold the window low
    block = get_patch_mode("volume3d")(_req(Volume3DPatch(size=[8, 16, 16]), img, m, mask))
    assert block.array.shape == (1, 8, 16, 16)


def test_volume3d_block_with_the_mask_channel():
    img, m, mask = _phantom("z")
    p = Volume3DPatch(size=[4, 14, 14], margin_mm=0.0, mask_channel=True)
    ps = get_patch_mode("volume3d")(_req(p, img, m, mask))
    assert ps.array.shape == (2, 4, 14, 14) and ps.channels == ["volume", "mask"]
    ct, roi = ps.array
    assert set(np.unique(roi)) == {0.0, 1.0}  # nearest neighbour: the mask stays binary
    # the VOI spans slices 10..13 (4 planes at 2.5 mm, no resampling in z): the mask's planes follow the
    # phantom's ROI, smallest at slice 10 (3 x 4 px) and largest at slice 12 (10 x 14 px, the whole box)
    assert np.allclose(ct[:, 7, 7], 100 + 10 * np.arange(10, 14), atol=1e-3)
    areas = roi.sum(axis=(1, 2))
    assert areas.argmax() == 2 and areas[2] == 14 * 14 and areas[0] < areas[1] < areas[2]  # slice 12 fills the box
    plain = get_patch_mode("volume3d")(_req(Volume3DPatch(size=[4, 14, 14], margin_mm=0.0), img, m, mask))
    assert np.array_equal(plain.array[0], ct)  # the CT channel is the block without the mask
    with pytest.raises(ValueError, match="mask_channel needs the 3D block"):
        Volume3DPatch(as_slices=True, mask_channel=True)


def test_volume3d_fixed_block_keeps_one_scale():
    img, m, mask = _phantom("x")  # HU = x index x 0.8 mm + 5
    # 16 x 16 x 10 mm at the native 0.8 x 0.8 x 2.5 mm: 20 x 20 x 4 voxels, no resizing
    p = Volume3DPatch(size=[4, 20, 20], side_mm=16.0, depth_mm=10.0, mask_channel=True)
    ps = get_patch_mode("volume3d")(_req(p, img, m, mask))
    assert ps.array.shape == (2, 4, 20, 20)
    assert ps.meta["grid_size"] == [20, 20, 4]
    ct, roi = ps.array
    assert np.allclose(np.diff(ct[0, 0]), SPACING[0], atol=1e-4)  # one native pixel per column: nothing resampled
    # centred on the ROI's centroid on its largest slice (x index 22.5): the middle columns straddle it
    centre_x = 22.5 * SPACING[0] + 5.0
    assert ct[0, 0, 9:11].mean() == pytest.approx(centre_x, abs=SPACING[0] / 2 + 1e-4)
    assert roi.sum() == mask.sum()  # planes 10..13 and the in-plane box hold every ROI voxel
    with pytest.raises(ValueError, match="depth_mm needs side_mm"):
        Volume3DPatch(depth_mm=10.0)


def test_roi_slices_cut_every_roi_slice_with_its_own_mask():
    img, m, mask = _phantom("x")  # HU = x index x 0.8 mm + 5
    # 16 mm at the native 0.8 mm: 20 px, nothing resampled in-plane
    ps = get_patch_mode("roi_slices")(_req(RoiSlicesPatch(size=[20, 20], side_mm=16.0), img, m, mask))
    assert ps.array.shape == (4, 2, 20, 20) and ps.channels == ["slice+0", "mask"]
    assert ps.meta["slices"] == [10, 11, 12, 13]
    assert ps.meta["sample_weights"] == [int(mask[z].sum()) for z in range(10, 14)] == [12, 48, 140, 80]
    assert [int(ps.array[i, 1].sum()) for i in range(4)] == ps.meta["sample_weights"]  # each slice's own mask
    # each square is centred on its own slice's ROI centroid (x index 21.5 on slices 10 and 11, 22.5 on 12, 22.5
    # on 13): the two middle columns straddle it
    for i, cx in enumerate((21.5, 21.5, 22.5, 22.5)):
        assert ps.array[i, 0, 10, 9:11].mean() == pytest.approx(cx * SPACING[0] + 5.0, abs=SPACING[0] / 2 + 1e-4)
    # a single-slice ROI: one sample, the slice2d patch
    one = mask.copy()
    one[[10, 11, 13]] = 0
    mi = sitk.GetImageFromArray(one)
    mi.CopyInformation(img)
    single = get_patch_mode("roi_slices")(_req(RoiSlicesPatch(size=[20, 20], side_mm=16.0), img, mi, one))
    flat = get_patch_mode("slice2d")(_req(Slice2DPatch(size=[20, 20], side_mm=16.0, mask_channel=True), img, mi, one))
    assert single.array.shape == (1, 2, 20, 20) and np.array_equal(single.array[0], flat.array)


def test_slices_mode_covers_the_roi_z_range():
    img, m, mask = _phantom("z")
    ps = get_patch_mode("slices")(_req(SlicesPatch(size=[32, 32], extra_slices=1, crop_to_body=False), img, m, mask))
    assert ps.array.shape == (6, 1, 32, 32)  # slices 9..14
    assert ps.meta["z_range"] == [9, 14]
    assert np.allclose(ps.array[:, 0, 5, 5], 100 + 10 * np.arange(9, 15))


@pytest.mark.parametrize("interp,tol", [("linear", 1e-4), ("bspline", 0.02)])
def test_roi_first_resampling_equals_whole_volume(interp, tol):
    rng = np.random.default_rng(0)
    arr = rng.normal(0, 100, size=(30, 60, 60)).astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING)
    origin, size, spacing = grid_around(img, (30.0, 28.0, 14.0), (20, 20, 9), (1.0, 1.0, 1.0))
    roi_first = resample_region(img, origin, size, spacing, interpolation=interp)
    from gastrorad.preprocess.roi import INTERPOLATORS
    whole = sitk.GetArrayFromImage(sitk.Resample(img, size, sitk.Transform(), INTERPOLATORS[interp], origin, spacing,
                                                 img.GetDirection(), -1024.0, sitk.sitkFloat32))
    assert np.max(np.abs(roi_first - whole)) < tol


def test_grid_outside_the_image_is_padded_with_air():
    img, _, _ = _phantom("z")
    origin, size, spacing = grid_around(img, (-100.0, -100.0, 5.0), (4, 4, 1), (1.0, 1.0, 1.0))
    assert np.all(resample_region(img, origin, size, spacing) == -1024.0)
