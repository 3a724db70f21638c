"""Spatial verification: does the query show the same physical scene as a neighbour?

The embedding says two photos look alike; a similar building in the same style, or another
stretch of the same kind of old town, looks alike too, and that is what puts a photo of an unknown
landmark confidently onto a known one. Geometric verification asks a different question: can the
query's local features be mapped onto the reference's by one perspective transform? Photos of the
same facade can (dozens of consistent matches), photos of a look-alike cannot (a handful at most).
Every Google Landmark Recognition winner re-ranked its top neighbours this way (DELF + RANSAC in
2019, 1st place; SIFT/SuperPoint matching later); here with SIFT from `indexer/ranking/local_features.py`:

  1. RootSIFT (Arandjelovic & Zisserman 2012): L1-normalise each descriptor, take the square root,
     so Euclidean matching compares them by the Hellinger kernel (more matches survive).
  2. Lowe's ratio test (0.8): keep a match only when its nearest descriptor is clearly nearer than
     the second.
  3. A homography fitted with MAGSAC++ (OpenCV's USAC), 4 px threshold: the inliers are the matches
     consistent with one plane-to-plane view change, which a facade seen from two places is, to
     within a few pixels at the stored sizes.

  4. The evidence is the inliers beyond what any fit explains: distinct keypoints only (several
     query features matched to one reference keypoint, or the reverse, count once: a fit whose
     inliers all land on one or two points of the other image is degenerate, not a view change),
     minus the 4 correspondences a homography fits exactly whatever they are (MINIMAL_SAMPLE).
     On landmarks-mini the most confident distractor's 21 raw inliers sat on 2 reference
     keypoints, and most distractors' best fits had 4-5 inliers: both count 0 now.

That count of each verified neighbour, capped and scaled to [0, 1], is added to its
landmark's vote (indexer/ranking/confidence.py `decide`): a query whose neighbours verify keeps or gains
confidence; one that only resembles its neighbours drops below the answers that verified.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from indexer.ranking.local_features import LocalFeatures

RATIO = 0.8  # Lowe's ratio test
THRESHOLD_PX = 4.0  # homography reprojection error of an inlier
MIN_MATCHES = 8  # fewer ratio-test matches: nothing to fit, 0 inliers
MINIMAL_SAMPLE = 4  # correspondences that determine a homography exactly: no evidence of a view change
MAX_ITERS = 10000
CONFIDENCE = 0.999


def root_sift(descriptors: np.ndarray) -> np.ndarray:
    """RootSIFT of uint8 SIFT descriptors [n, 128] -> float32, unit L2 norm per row."""
    d = np.asarray(descriptors, np.float32)
    return np.sqrt(d / (d.sum(axis=1, keepdims=True) + 1e-7))


class Verifier:
    """Counts the inliers between two images' local features (one per thread: OpenCV's matcher)."""

    def __init__(self, ratio: float = RATIO, threshold_px: float = THRESHOLD_PX) -> None:
        import cv2

        self._cv2 = cv2
        self._matcher = cv2.BFMatcher(cv2.NORM_L2)
        self.ratio = ratio
        self.threshold_px = threshold_px

    def inliers(self, query: LocalFeatures, reference: LocalFeatures) -> int:
        """The evidence that the two images show one scene: the inliers of the fitted homography
        counted by distinct keypoints (min over the two images), minus the MINIMAL_SAMPLE that any
        fit explains; 0 when too few match."""
        fit = self._fit(query, reference)
        if fit is None:
            return 0
        query_idx, reference_idx = fit[2], fit[3]
        distinct = min(len(np.unique(query_idx)), len(np.unique(reference_idx)))
        return max(0, distinct - MINIMAL_SAMPLE)

    def matches(self, query: LocalFeatures, reference: LocalFeatures) -> np.ndarray:
        """The inlier matches themselves, float32 [n, 4]: query x, y, reference x, y (pixels of the
        images as stored); none when too few match. The report draws them (indexer/report.py)."""
        fit = self._fit(query, reference)
        if fit is None:
            return np.zeros((0, 4), np.float32)
        return np.concatenate([fit[0], fit[1]], axis=1).astype(np.float32)

    def _fit(self, query: LocalFeatures, reference: LocalFeatures):
        """(query xy, reference xy, query keypoint indices, reference keypoint indices) of the
        homography's inlier matches, or None when too few match or no model fits."""
        if len(query) < MIN_MATCHES or len(reference) < MIN_MATCHES:
            return None
        cv2 = self._cv2
        pairs = self._matcher.knnMatch(root_sift(query.descriptors), root_sift(reference.descriptors), k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < self.ratio * p[1].distance]
        if len(good) < MIN_MATCHES:
            return None
        query_idx = np.array([m.queryIdx for m in good], np.int64)
        reference_idx = np.array([m.trainIdx for m in good], np.int64)
        src, dst = query.xy[query_idx], reference.xy[reference_idx]
        try:
            _, mask = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, self.threshold_px, maxIters=MAX_ITERS,
                                         confidence=CONFIDENCE)
        except cv2.error:  # degenerate point sets (all collinear, duplicates): no model
            return None
        if mask is None:
            return None
        keep = mask.ravel().astype(bool)
        return src[keep], dst[keep], query_idx[keep], reference_idx[keep]


def verification_scores(inliers: np.ndarray, cap: int) -> np.ndarray:
    """Inlier counts [..] (Verifier.inliers) -> scores in [0, 1]: min(inliers, cap) / cap; -1 (not verified) -> 0."""
    if cap < 1:
        raise ValueError(f"cap={cap}: at least 1 inlier")
    counts = np.asarray(inliers, np.float32)
    return np.clip(counts, 0, cap) / cap


def landmark_bonus(landmarks: Sequence[int], scores: Sequence[float]) -> dict:
    """Each landmark's best verification score among its neighbours (landmark id < 0: padding)."""
    bonus: dict = {}
    for landmark, score in zip(landmarks, scores):
        if landmark >= 0:
            bonus[int(landmark)] = max(bonus.get(int(landmark), 0.0), float(score))
    return bonus
