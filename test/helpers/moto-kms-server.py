"""moto's server, with its KMS signing made to behave as AWS KMS documents where moto
differs, so that the aws-kms custody tests check keyturn against KMS's behaviour, not moto's:

- RSASSA_PSS_SHA_256 uses a salt as long as the digest (32 bytes), as KMS does and JOSE's PS256
  requires (RFC 7518 section 3.5); moto uses the longest salt the key allows, which JOSE rejects.
- MessageType DIGEST signs the given SHA-256 digest as it is; moto hashes it again, as if RAW.
- Sign with a key that is not Enabled (pending deletion, disabled) fails with KMSInvalidStateException
  (DisabledException when disabled); moto signs with it.
- ScheduleKeyDeletion takes a key ARN as well as a key id (moto fails on an ARN), and fails with
  KMSInvalidStateException for a key already pending deletion (moto schedules it again).

Arguments are moto_server's (-H host -p port).
"""

import base64
import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from moto.core.exceptions import JsonRESTError
from moto.kms import responses, utils as kms_utils
from moto.server import main

HASHES = {"SHA_256": hashes.SHA256, "SHA_384": hashes.SHA384, "SHA_512": hashes.SHA512}


def kms_sign(private_key, message, message_type, signing_algorithm):
    """Signs as KMS does: hashes a RAW message, signs a DIGEST as given."""
    hash_algorithm = HASHES[signing_algorithm[-7:]]()
    chosen = utils.Prehashed(hash_algorithm) if message_type == "DIGEST" else hash_algorithm
    if isinstance(private_key, kms_utils.ECDSAPrivateKey):
        return private_key.private_key.sign(message, ec.ECDSA(chosen))
    if signing_algorithm.startswith("RSASSA_PSS_"):
        pad = padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=hash_algorithm.digest_size)
    else:
        pad = padding.PKCS1v15()
    return private_key.private_key.sign(message, pad, chosen)


def sign(self):
    key_id = self._get_param("KeyId")
    message = self._get_param("Message")
    if isinstance(message, str):
        message = message.encode("utf-8")
    signing_algorithm = self._get_param("SigningAlgorithm")
    self._validate_key_id(key_id)  # NotFoundException for a key moto does not hold
    key = self.kms_backend.describe_key(key_id)
    if key.key_state == "Disabled":
        raise JsonRESTError("DisabledException", f"{key.arn} is disabled.")
    if key.key_state != "Enabled":
        raise JsonRESTError("KMSInvalidStateException", f"{key.arn} is pending deletion.")
    if signing_algorithm not in key.signing_algorithms:
        raise JsonRESTError("ValidationException", f"{signing_algorithm} is not valid for {key.arn}")
    message_type = self._get_param("MessageType") or "RAW"
    signature = kms_sign(key.private_key, message, message_type, signing_algorithm)
    return json.dumps(
        {
            "KeyId": key.arn,
            "Signature": base64.b64encode(signature).decode("utf-8"),
            "SigningAlgorithm": signing_algorithm,
        }
    )


def schedule_key_deletion(self):
    key_id = self._get_param("KeyId")
    self._validate_cmk_id(key_id)
    key = self.kms_backend.describe_key(key_id)
    if key.key_state == "PendingDeletion":
        raise JsonRESTError("KMSInvalidStateException", f"{key.arn} is pending deletion.")
    window = self._get_param("PendingWindowInDays") or 30
    deletion_date = self.kms_backend.schedule_key_deletion(key.id, window)
    return json.dumps(
        {"KeyId": key.arn, "DeletionDate": deletion_date, "KeyState": key.key_state, "PendingWindowInDays": window}
    )


responses.KmsResponse.sign = sign
responses.KmsResponse.schedule_key_deletion = schedule_key_deletion

if __name__ == "__main__":
    main()
