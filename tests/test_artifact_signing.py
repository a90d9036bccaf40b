"""Signed artifacts: a good signature loads; unsigned, wrongly signed or tampered ones are
refused by lgc.load(trusted_keys=), `lgc run --trusted-keys` and `lgc deploy --trusted-keys`
(whose workers check again before loading). Keys come from `cryptography` directly here."""
import json
import zipfile

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

import lgc
from lgc.errors import InputError, SignatureError
from lgc.ir import dtypes
from lgc.ir.graph import TensorType
from lgc.runtime.artifact import signing, write_artifact
from lgc.tools.cli import main

CONTENT = ("manifest.json", "ir.txt", "kernels.cl", "weights.bin")


def _pem_private(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_public(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def setup(small_model_path, tmp_path):
    """(executable, signed artifact, unsigned artifact, private key file, public key file,
    another key pair's public key file)."""
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    (tmp_path / "k.pem").write_bytes(_pem_private(key))
    (tmp_path / "k.pub.pem").write_bytes(_pem_public(key))
    (tmp_path / "o.pub.pem").write_bytes(_pem_public(other))
    exe = lgc.compile(small_model_path).executable({"x": TensorType(dtypes.f32, (2, 4))})
    exe.save(tmp_path / "signed.lgc", sign_key=tmp_path / "k.pem")
    exe.save(tmp_path / "plain.lgc")
    return exe, tmp_path / "signed.lgc", tmp_path / "plain.lgc", tmp_path / "k.pem", \
        tmp_path / "k.pub.pem", tmp_path / "o.pub.pem"


def test_signed_artifact_loads_with_its_key(setup, tmp_path):
    exe, signed, plain, _, pub, other = setup
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    want = exe(x)
    key = serialization.load_pem_public_key(pub.read_bytes())
    both = tmp_path / "both.pub.pem"
    both.write_bytes(other.read_bytes() + pub.read_bytes())        # several keys in one file
    for trusted in (pub, str(pub), [other, pub], pub.read_bytes(), key, both):
        for got, w in zip(lgc.load(signed, trusted_keys=trusted)(x), want):
            np.testing.assert_array_equal(got, w)
    lgc.load(signed)                                # no keys given: the digest is still checked
    lgc.load(plain)


def test_unsigned_other_key_and_tampered_are_refused(setup, tmp_path):
    _, signed, plain, _, pub, other = setup
    with pytest.raises(SignatureError, match=r"plain\.lgc: unsigned"):
        lgc.load(plain, trusted_keys=pub)
    with pytest.raises(SignatureError, match=r"signed\.lgc: signed by key '[0-9a-f]{16}', which is not a trusted key"):
        lgc.load(signed, trusted_keys=other)
    with pytest.raises(SignatureError, match="not a trusted key"):
        lgc.load(signed, trusted_keys=[])
    # the manifest edited and the digest table recomputed; the signature cannot be
    with zipfile.ZipFile(signed) as z:
        members = {n: z.read(n) for n in z.namelist()}
    signature = json.loads(members["digest.json"])["signature"]
    man = json.loads(members["manifest.json"])
    man["launches"][0]["node"] = "renamed"
    edited = {**members, "manifest.json": json.dumps(man).encode()}
    write_artifact(tmp_path / "t.lgc", {k: edited[k] for k in CONTENT})
    with zipfile.ZipFile(tmp_path / "t.lgc") as z:
        doc = json.loads(z.read("digest.json"))
    doc["signature"] = signature
    with zipfile.ZipFile(tmp_path / "t2.lgc", "w") as z:
        for k in CONTENT:
            z.writestr(k, edited[k])
        z.writestr("digest.json", json.dumps(doc))
    with pytest.raises(SignatureError, match=r"t2\.lgc: signature by key \w+ does not match the content"):
        lgc.load(tmp_path / "t2.lgc", trusted_keys=pub)
    lgc.load(tmp_path / "t2.lgc")         # without trusted keys it is an intact (unsigned) artifact


def test_signing_block_and_key_errors(setup, tmp_path):
    exe, _, _, key_file, pub, _ = setup
    with signing(key_file):
        exe.save(tmp_path / "ctx.lgc")
    lgc.load(tmp_path / "ctx.lgc", trusted_keys=pub)
    exe.save(tmp_path / "after.lgc")                # the block is over: unsigned again
    with pytest.raises(SignatureError, match="unsigned"):
        lgc.load(tmp_path / "after.lgc", trusted_keys=pub)
    rsa = generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa.pem").write_bytes(_pem_private(rsa))
    (tmp_path / "rsa.pub.pem").write_bytes(_pem_public(rsa))
    for bad, match in ((tmp_path / "rsa.pem", "not an Ed25519 key"), (pub, "not an unencrypted PEM private key"),
                       (tmp_path / "none.pem", "No such file")):
        with pytest.raises(InputError, match=match):
            exe.save(tmp_path / "x.lgc", sign_key=bad)
    for bad, match in ((tmp_path / "rsa.pub.pem", "not Ed25519"), (key_file, "no PEM public key"),
                       (tmp_path / "none.pem", "No such file")):
        with pytest.raises(InputError, match=match):
            lgc.load(tmp_path / "ctx.lgc", trusted_keys=bad)


def test_cli_keygen_compile_sign_run(small_model_path, tmp_path, capsys):
    key = tmp_path / "deploy.pem"
    assert main(["keygen", str(key)]) == 0
    pub = tmp_path / "deploy.pub.pem"
    assert key.stat().st_mode & 0o777 == 0o600 and pub.exists()
    assert "key id" in capsys.readouterr().out
    assert main(["keygen", str(key)]) == 1                             # never overwrites
    assert "exists" in capsys.readouterr().err
    out = tmp_path / "m.lgc"
    assert main(["compile", str(small_model_path), "-o", str(out), "--sign", str(key)]) == 0
    assert "signed by key" in capsys.readouterr().out
    assert main(["run", str(out), "--random", "--trusted-keys", str(pub)]) == 0
    assert "y: float32[1, 4]" in capsys.readouterr().out
    assert main(["compile", str(small_model_path), "-o", str(tmp_path / "u.lgc")]) == 0
    capsys.readouterr()
    assert main(["run", str(tmp_path / "u.lgc"), "--random", "--trusted-keys", str(pub)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lgc: error: u.lgc: unsigned") and err.count("\n") == 1
    assert main(["compile", str(small_model_path), "--sign", str(pub)]) == 1   # fails before compiling
    assert "not an unencrypted PEM private key" in capsys.readouterr().err
    assert main(["run", str(small_model_path), "--random", "--trusted-keys", str(pub)]) == 1
    assert "--trusted-keys checks the signature of a .lgc" in capsys.readouterr().err


# ---- deployment: the driver checks, and each worker again before it loads -----------------

@pytest.fixture
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, resources={"lgc_device": 2}, include_dashboard=False, log_to_driver=False,
             object_store_memory=100 * 2**20, namespace="lgc")
    yield ray
    ray.shutdown()


def test_deploy_with_trusted_keys(ray_local, setup, capsys, monkeypatch):
    from lgc.cluster import deployment
    from lgc.cluster.connect import ClusterError
    exe, signed, plain, _, pub, _ = setup
    assert main(["deploy", str(signed), "--trusted-keys", str(pub), "--name", "signed"]) == 0
    assert "deployed 'signed'" in capsys.readouterr().out
    dep = deployment.Deployment.attach("signed", None)
    try:
        x = np.ones((2, 4), np.float32)
        np.testing.assert_array_equal(dep.infer({"x": x})["y"], exe(x)[0])
    finally:
        dep.shutdown()
    assert main(["deploy", str(plain), "--trusted-keys", str(pub), "--name", "plain"]) == 1
    assert "plain.lgc: unsigned" in capsys.readouterr().err
    # the driver's check skipped: the worker refuses the unsigned stage itself
    check = deployment.describe_stages
    monkeypatch.setattr(deployment, "describe_stages", lambda paths, trusted_keys=None: check(paths))
    with pytest.raises(ClusterError, match=r"failed to start: .*unsigned"):
        deployment.Deployment.create([plain], name="sneaky", detached=False, trusted_keys=pub,
                                     ready_timeout=120)
    assert deployment.list_deployments(ray_local) == []      # and nothing is left running


def test_serve_backend_checks_signatures(setup):
    """`lgc serve --trusted-keys` (LocalBackend): the signed artifact serves, the unsigned one and
    an ONNX model are refused before anything runs."""
    from lgc.serve.backend import LocalBackend
    _, signed, plain, _, pub, other = setup
    LocalBackend(signed, trusted_keys=[pub]).close()
    with pytest.raises(SignatureError):
        LocalBackend(plain, trusted_keys=[pub])
    with pytest.raises(SignatureError):
        LocalBackend(signed, trusted_keys=[other])
    with pytest.raises(InputError, match="not one"):
        LocalBackend(signed.with_suffix(".onnx"), trusted_keys=[pub])
