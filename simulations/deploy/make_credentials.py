"""Generate test credentials for a Flower deployment: a CA, a SuperLink TLS certificate
and one ECDSA key pair per SuperNode (for SuperNode authentication).

    python simulations/deploy/make_credentials.py --out credentials --supernodes 2 \
        --host 127.0.0.1 --host localhost

Writes ``ca.crt``, ``ca.key``, ``server.pem``, ``server.key`` (TLS, the server certificate
names every ``--host`` as a subject alternative name) and ``supernode-<i>`` /
``supernode-<i>.pub`` (OpenSSH ECDSA P-384 keys: the private key goes to
``flower-supernode --auth-supernode-private-key``, the public key to
``flwr supernode register``). The CA and server certificates are valid for ``--days``
(default 30) from now; the SuperNode keys do not expire. To renew the certificates only, run
again with ``--supernodes 0`` (a new CA: every SuperNode and ``flwr`` client needs the new
``ca.crt``). These are for tests and prototypes only: production keys come from your
organisation's PKI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedsec test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def make_tls(out: Path, hosts: list[str], days: int = 30) -> dt.datetime:
    """Write a self-signed CA and a server certificate for ``hosts`` signed by it, both valid for
    ``days`` from now; return when they expire."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_cert = (x509.CertificateBuilder().subject_name(_name("fedsec test CA")).issuer_name(_name("fedsec test CA"))
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server_cert = (x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(ca_cert.subject)
                   .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
                   .add_extension(x509.SubjectAlternativeName([_alt_name(h) for h in hosts]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .sign(ca_key, hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "ca.key").write_bytes(_pem_key(ca_key))
    (out / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (out / "server.key").write_bytes(_pem_key(server_key))
    (out / "server.pem").write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    for private in ("ca.key", "server.key"):
        (out / private).chmod(0o600)
    return now + dt.timedelta(days=days)


def make_supernode_key(out: Path, name: str) -> Path:
    """Write an OpenSSH ECDSA P-384 key pair ``name`` / ``name.pub``; return the public key path."""
    key = ec.generate_private_key(ec.SECP384R1())
    out.mkdir(parents=True, exist_ok=True)
    private = out / name
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public = out / f"{name}.pub"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH) + b"\n")
    return public


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("credentials"))
    parser.add_argument("--supernodes", type=int, default=2, help="how many SuperNode key pairs (0: none)")
    parser.add_argument("--host", action="append", help="SuperLink host name or IP (repeatable)")
    parser.add_argument("--days", type=int, default=30, help="certificate validity in days (default 30)")
    args = parser.parse_args()
    expires = make_tls(args.out, args.host or ["127.0.0.1", "localhost"], args.days)
    for i in range(args.supernodes):
        make_supernode_key(args.out, f"supernode-{i}")
    print(f"credentials written to {args.out}; the CA and server certificates expire "
          f"{expires:%Y-%m-%d %H:%M} UTC")


if __name__ == "__main__":
    main()
