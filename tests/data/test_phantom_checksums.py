"""make_phantom is deterministic down to the bit: SHA-256 digests of its HU volume and labels for given seeds, per
profile, as made before its speed-up (default shapes, and an explicit shape and spacing). A change that alters a
phantom shows here; one that only makes it faster does not. The digests are of float32 arithmetic as numpy and
scipy do it on x86-64; another platform's rounding may differ in the last bit."""
import hashlib

import pytest

from volumetric_attention.data.phantoms import make_phantom

EXPLICIT = {"shape": (20, 96, 96), "spacing": (2.5, 2.0, 2.0)}
# (profile, seed, explicit shape and spacing?): (shape, first 16 hex digits of sha256 of hu, of labels)
DIGESTS = {
    ("abdomen", 0, False): ((74, 128, 128), "e9dd5875d49332a1", "07556ffe207a4986"),
    ("abdomen", 1, False): ((59, 128, 128), "40b01047da862e81", "5e3aa5736f9db1b1"),
    ("zcontext", 0, False): ((74, 128, 128), "17154df9bbda78e5", "c496962ec275df62"),
    ("zcontext", 1, False): ((59, 128, 128), "e95bf0125101175e", "78664e316d626651"),
    ("zcontext_liver", 0, False): ((74, 128, 128), "8bf1f8f458a180cf", "0328d52d663e9476"),
    ("zcontext_liver", 1, False): ((59, 128, 128), "99824ea1e4534dbb", "5fb26442efbf5162"),
    ("zcontext_small", 0, False): ((74, 128, 128), "3ac68d5931176c6f", "70cd3895bd5199b3"),
    ("zcontext_small", 1, False): ((59, 128, 128), "7913fc42a67b0da4", "311c4f33094a8ce6"),
    ("abdomen", 5, True): ((20, 96, 96), "8f6ff5deab3d0e68", "75f240f30caad6dd"),
    ("zcontext", 5, True): ((20, 96, 96), "29a02406774a0637", "2ec91a70ec966cda"),
    ("zcontext_liver", 5, True): ((20, 96, 96), "c166ceb71ebc7267", "e79844c4a4c72a76"),
    ("zcontext_small", 5, True): ((20, 96, 96), "cbd7ece2a50579cc", "8beb8d630a231e16"),
}


def _digest(array):
    return hashlib.sha256(array.tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("profile, seed, explicit", sorted(DIGESTS))
def test_phantoms_are_the_same_to_the_bit(profile, seed, explicit):
    hu, labels, _ = make_phantom(seed, profile=profile, **(EXPLICIT if explicit else {}))
    shape, hu_digest, labels_digest = DIGESTS[(profile, seed, explicit)]
    assert hu.shape == labels.shape == shape
    assert (_digest(hu), _digest(labels)) == (hu_digest, labels_digest)
