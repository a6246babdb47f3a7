"""Face detection and 5 landmarks with weights that ship inside PyPI packages: dlib.

Why dlib (docs/data.md "Detector"): its HOG + linear SVM frontal face detector is compiled into
the library itself (`dlib.get_frontal_face_detector()`, no weights file) and its 68-point shape
predictor (Kazemi & Sullivan 2014, trained on iBUG 300-W) ships in the `face_recognition_models`
package, so nothing is downloaded at run time. `dlib-bin` is a prebuilt wheel of dlib (no 20-minute
compile). The other candidates do not qualify here: mediapipe ≥ 0.10.30 wheels no longer carry the
face models, insightface/retinaface/uniface download their weights at run time, facenet-pytorch's
MTCNN needs torchvision's nms (no PyPI torchvision imports beside this torch), and OpenCV's Haar
cascades give a box but no landmarks.

The 5 points of insightface's template (left eye, right eye, nose tip, left and right mouth
corner, as they appear in the image) from the 68 iBUG points, the usual reduction of the 68-point
markup to the 5 points that ArcFace alignment uses: eye centres = the means of points 36–41 and 42–47, nose tip =
point 30, mouth corners = points 48 and 54 (0-based).
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np

from dmfr.errors import DmfrError

SHAPE_MODEL = "shape_predictor_68_face_landmarks.dat"


def shape_model_path() -> str:
    # find_spec locates the package without importing it: its __init__ needs pkg_resources, which
    # current setuptools no longer provides.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DmfrError("face detection needs the face_recognition_models package (pip install -r requirements.txt)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", SHAPE_MODEL)
    if not os.path.isfile(path):
        raise DmfrError(f"{path}: the 68-point shape model is missing from face_recognition_models")
    return path


def five_from_68(points: np.ndarray) -> np.ndarray:
    """[68, 2] iBUG points → [5, 2] in insightface's order."""
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])


class FaceDetector:
    """detect(RGB uint8 HWC) → float64 [5, 2] landmarks of the face nearest the image centre, or None."""

    def __init__(self, upsample: int = 1):
        try:
            import dlib
        except ImportError:
            raise DmfrError("face detection needs dlib (the dlib-bin wheel: pip install -r requirements.txt)") from None
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(shape_model_path())
        self.upsample = int(upsample)

    def detect(self, img: np.ndarray) -> np.ndarray | None:
        img = np.ascontiguousarray(img, dtype=np.uint8)  # grey photographs arrive as 3 equal channels
        boxes = self.detector(img, self.upsample)
        if len(boxes) == 0:
            return None
        h, w = img.shape[:2]
        # Labelled-face sets (LFW) centre the labelled person; others in the frame are bystanders.
        box = min(boxes, key=lambda r: ((r.left() + r.right()) / 2 - w / 2) ** 2 + ((r.top() + r.bottom()) / 2 - h / 2) ** 2)
        shape = self.predictor(img, box)
        pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)
        return five_from_68(pts)
