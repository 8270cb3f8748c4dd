import stat
import time

from cryptography import x509

from handshake.endpoints import make_chain


def test_p256_chain_has_leaf_then_intermediate_with_the_server_name():
    chain = make_chain()
    certs = x509.load_pem_x509_certificates(chain.chain_pem)
    assert len(certs) == len(chain.der_sizes) == 2
    san = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["server.test"]
    assert certs[0].issuer == certs[1].subject
    ca = x509.load_pem_x509_certificate(chain.ca_pem)
    assert certs[1].issuer == ca.subject
    certs[0].verify_directly_issued_by(certs[1])
    certs[1].verify_directly_issued_by(ca)


def test_intermediates_are_sent_leaf_first_up_to_the_ca():
    chain = make_chain(intermediates=3)
    certs = x509.load_pem_x509_certificates(chain.chain_pem)
    ca = x509.load_pem_x509_certificate(chain.ca_pem)
    assert len(certs) == 4
    for child, parent in zip(certs, [*certs[1:], ca]):
        child.verify_directly_issued_by(parent)


def test_rsa_and_longer_chains_send_more_certificate_bytes():
    small, big = make_chain("p256", 1), make_chain("rsa2048", 3)
    assert len(big.der_sizes) == 4
    assert sum(big.der_sizes) > sum(small.der_sizes)
    assert big.der_sizes[0] > small.der_sizes[0]


def test_chains_are_cached_per_process():
    assert make_chain("p256", 2) is make_chain("p256", 2)


def test_p256_chain_creation_is_fast():
    started = time.perf_counter()
    make_chain("p256", 1, server_name="fresh.test")
    assert time.perf_counter() - started < 0.1


def test_written_private_key_is_owner_only(tmp_path):
    files = make_chain().write(tmp_path)
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert files.key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert files.chain.read_bytes() == make_chain().chain_pem


def test_rewriting_over_a_world_readable_key_tightens_it(tmp_path):
    (tmp_path / "leaf.key").write_bytes(b"old")
    (tmp_path / "leaf.key").chmod(0o644)
    files = make_chain().write(tmp_path)
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
