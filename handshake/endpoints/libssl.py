"""ctypes bindings to the OpenSSL libssl/libcrypto that the stdlib ``ssl`` module already loaded.

The stdlib has no early-data (0-RTT) API, so the 0-RTT endpoints call libssl directly. Every
function gets an explicit ``restype``/``argtypes``: ctypes' default ``int`` return truncates a
64-bit pointer and the next call through it segfaults. Several OpenSSL "functions" are macros
over ``SSL_CTX_ctrl``/``SSL_ctrl``; their command numbers are below (from OpenSSL 3.0 ssl.h).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ssl as _stdlib_ssl  # noqa: F401  (loads libssl/libcrypto into the process first)
from ctypes import POINTER, c_char_p, c_int, c_long, c_size_t, c_uint32, c_uint64, c_ulong, c_void_p

P = c_void_p

# Macro command numbers (ssl.h, OpenSSL 3.0).
SSL_CTRL_SET_SESS_CACHE_SIZE = 42
SSL_CTRL_SET_SESS_CACHE_MODE = 44
SSL_CTRL_SET_TLSEXT_HOSTNAME = 55
SSL_CTRL_CHAIN_CERT = 89
SSL_CTRL_SET_GROUPS_LIST = 92
SSL_CTRL_SET_MIN_PROTO_VERSION = 123
SSL_CTRL_SET_MAX_PROTO_VERSION = 124

TLS1_3_VERSION = 0x0304
TLSEXT_NAMETYPE_host_name = 0
SSL_VERIFY_NONE = 0x00
SSL_VERIFY_PEER = 0x01
SSL_SESS_CACHE_CLIENT = 0x0001
SSL_SESS_CACHE_NO_INTERNAL_STORE = 0x0200

SSL_ERROR_NONE = 0
SSL_ERROR_SSL = 1
SSL_ERROR_WANT_READ = 2
SSL_ERROR_WANT_WRITE = 3
SSL_ERROR_SYSCALL = 5
SSL_ERROR_ZERO_RETURN = 6

SSL_READ_EARLY_DATA_ERROR = 0
SSL_READ_EARLY_DATA_SUCCESS = 1
SSL_READ_EARLY_DATA_FINISH = 2

SSL_EARLY_DATA_NOT_SENT = 0
SSL_EARLY_DATA_REJECTED = 1
SSL_EARLY_DATA_ACCEPTED = 2

KEYLOG_CALLBACK = ctypes.CFUNCTYPE(None, P, c_char_p)
"""void (*)(const SSL *ssl, const char *line)"""
NEW_SESSION_CALLBACK = ctypes.CFUNCTYPE(c_int, P, P)
"""int (*)(SSL *ssl, SSL_SESSION *sess): return 1 to keep the reference."""
ALLOW_EARLY_DATA_CALLBACK = ctypes.CFUNCTYPE(c_int, P, P)
"""int (*)(SSL *s, void *arg): return 0 to reject early data (the PSK still resumes)."""
ALPN_SELECT_CALLBACK = ctypes.CFUNCTYPE(c_int, P, POINTER(P), POINTER(ctypes.c_ubyte), P, ctypes.c_uint, P)
"""int (*)(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
unsigned int inlen, void *arg): SSL_TLSEXT_ERR_OK with the choice, or SSL_TLSEXT_ERR_NOACK."""
SSL_TLSEXT_ERR_OK = 0
SSL_TLSEXT_ERR_NOACK = 3
OPENSSL_NPN_NEGOTIATED = 1


def _loaded_library(stem: str) -> str:
    """Path of ``stem`` (e.g. "libssl.so") as mapped into this process by the ``_ssl`` module.

    Loading a second, different libssl would give two copies of OpenSSL's globals; reusing the
    mapped path makes ``dlopen`` hand back the very same library.
    """
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rsplit(None, 1)[-1]
                if "/" in path and path.rsplit("/", 1)[-1].startswith(stem):
                    return path
    except OSError:
        pass
    found = ctypes.util.find_library(stem.removeprefix("lib").removesuffix(".so"))
    if found is None:
        raise OSError(f"cannot find {stem}")
    return found


libssl = ctypes.CDLL(_loaded_library("libssl.so"))
libcrypto = ctypes.CDLL(_loaded_library("libcrypto.so"))


def _bind(lib: ctypes.CDLL, name: str, restype, *argtypes):
    function = getattr(lib, name)
    function.restype = restype
    function.argtypes = list(argtypes)
    return function


size_p = POINTER(c_size_t)

# libcrypto: errors, memory BIOs, PEM, X509 stores.
ERR_get_error = _bind(libcrypto, "ERR_get_error", c_ulong)
ERR_error_string_n = _bind(libcrypto, "ERR_error_string_n", None, c_ulong, c_char_p, c_size_t)
ERR_clear_error = _bind(libcrypto, "ERR_clear_error", None)
BIO_s_mem = _bind(libcrypto, "BIO_s_mem", P)
BIO_new = _bind(libcrypto, "BIO_new", P, P)
BIO_new_mem_buf = _bind(libcrypto, "BIO_new_mem_buf", P, c_char_p, c_int)
BIO_free = _bind(libcrypto, "BIO_free", c_int, P)
BIO_write = _bind(libcrypto, "BIO_write", c_int, P, c_char_p, c_int)
BIO_read = _bind(libcrypto, "BIO_read", c_int, P, c_void_p, c_int)
BIO_ctrl_pending = _bind(libcrypto, "BIO_ctrl_pending", c_size_t, P)
PEM_read_bio_X509 = _bind(libcrypto, "PEM_read_bio_X509", P, P, P, P, P)
PEM_read_bio_PrivateKey = _bind(libcrypto, "PEM_read_bio_PrivateKey", P, P, P, P, P)
X509_free = _bind(libcrypto, "X509_free", None, P)
EVP_PKEY_free = _bind(libcrypto, "EVP_PKEY_free", None, P)
X509_STORE_add_cert = _bind(libcrypto, "X509_STORE_add_cert", c_int, P, P)
X509_verify_cert_error_string = _bind(libcrypto, "X509_verify_cert_error_string", c_char_p, c_long)

# libssl: contexts.
TLS_method = _bind(libssl, "TLS_method", P)
SSL_CTX_new = _bind(libssl, "SSL_CTX_new", P, P)
SSL_CTX_free = _bind(libssl, "SSL_CTX_free", None, P)
SSL_CTX_ctrl = _bind(libssl, "SSL_CTX_ctrl", c_long, P, c_int, c_long, P)
SSL_CTX_set_options = _bind(libssl, "SSL_CTX_set_options", c_uint64, P, c_uint64)
SSL_CTX_use_certificate = _bind(libssl, "SSL_CTX_use_certificate", c_int, P, P)
SSL_CTX_use_PrivateKey = _bind(libssl, "SSL_CTX_use_PrivateKey", c_int, P, P)
SSL_CTX_check_private_key = _bind(libssl, "SSL_CTX_check_private_key", c_int, P)
SSL_CTX_get_cert_store = _bind(libssl, "SSL_CTX_get_cert_store", P, P)
SSL_CTX_set_verify = _bind(libssl, "SSL_CTX_set_verify", None, P, c_int, P)
SSL_CTX_set_max_early_data = _bind(libssl, "SSL_CTX_set_max_early_data", c_int, P, c_uint32)
SSL_CTX_set_num_tickets = _bind(libssl, "SSL_CTX_set_num_tickets", c_int, P, c_size_t)
SSL_CTX_set_keylog_callback = _bind(libssl, "SSL_CTX_set_keylog_callback", None, P, KEYLOG_CALLBACK)
SSL_CTX_sess_set_new_cb = _bind(libssl, "SSL_CTX_sess_set_new_cb", None, P, NEW_SESSION_CALLBACK)
SSL_CTX_set_default_verify_paths = _bind(libssl, "SSL_CTX_set_default_verify_paths", c_int, P)
SSL_CTX_set_alpn_protos = _bind(libssl, "SSL_CTX_set_alpn_protos", c_int, P, c_char_p, ctypes.c_uint)
"""Returns 0 on success (unlike the rest of libssl)."""
SSL_CTX_set_alpn_select_cb = _bind(libssl, "SSL_CTX_set_alpn_select_cb", None, P, ALPN_SELECT_CALLBACK, P)
SSL_select_next_proto = _bind(libssl, "SSL_select_next_proto", c_int, POINTER(P), POINTER(ctypes.c_ubyte),
                              P, ctypes.c_uint, P, ctypes.c_uint)

# libssl: connections.
SSL_new = _bind(libssl, "SSL_new", P, P)
SSL_free = _bind(libssl, "SSL_free", None, P)
SSL_ctrl = _bind(libssl, "SSL_ctrl", c_long, P, c_int, c_long, P)
SSL_set_bio = _bind(libssl, "SSL_set_bio", None, P, P, P)
SSL_set_connect_state = _bind(libssl, "SSL_set_connect_state", None, P)
SSL_set_accept_state = _bind(libssl, "SSL_set_accept_state", None, P)
SSL_set1_host = _bind(libssl, "SSL_set1_host", c_int, P, c_char_p)
SSL_set_session = _bind(libssl, "SSL_set_session", c_int, P, P)
SSL_set_allow_early_data_cb = _bind(libssl, "SSL_set_allow_early_data_cb", None, P, ALLOW_EARLY_DATA_CALLBACK, P)
SSL_set_quiet_shutdown = _bind(libssl, "SSL_set_quiet_shutdown", None, P, c_int)
SSL_do_handshake = _bind(libssl, "SSL_do_handshake", c_int, P)
SSL_read_ex = _bind(libssl, "SSL_read_ex", c_int, P, c_void_p, c_size_t, size_p)
SSL_write_ex = _bind(libssl, "SSL_write_ex", c_int, P, c_char_p, c_size_t, size_p)
SSL_read_early_data = _bind(libssl, "SSL_read_early_data", c_int, P, c_void_p, c_size_t, size_p)
SSL_write_early_data = _bind(libssl, "SSL_write_early_data", c_int, P, c_char_p, c_size_t, size_p)
SSL_get_early_data_status = _bind(libssl, "SSL_get_early_data_status", c_int, P)
SSL_get_error = _bind(libssl, "SSL_get_error", c_int, P, c_int)
SSL_get_verify_result = _bind(libssl, "SSL_get_verify_result", c_long, P)
SSL_session_reused = _bind(libssl, "SSL_session_reused", c_int, P)
SSL_get_version = _bind(libssl, "SSL_get_version", c_char_p, P)
SSL_get_current_cipher = _bind(libssl, "SSL_get_current_cipher", P, P)
SSL_CIPHER_get_name = _bind(libssl, "SSL_CIPHER_get_name", c_char_p, P)
SSL_shutdown = _bind(libssl, "SSL_shutdown", c_int, P)
SSL_get1_session = _bind(libssl, "SSL_get1_session", P, P)
SSL_get0_alpn_selected = _bind(libssl, "SSL_get0_alpn_selected", None, P, POINTER(ctypes.c_char_p),
                               POINTER(ctypes.c_uint))

# libssl: sessions.
SSL_SESSION_free = _bind(libssl, "SSL_SESSION_free", None, P)
SSL_SESSION_get_max_early_data = _bind(libssl, "SSL_SESSION_get_max_early_data", c_uint32, P)
SSL_SESSION_is_resumable = _bind(libssl, "SSL_SESSION_is_resumable", c_int, P)
SSL_SESSION_get0_alpn_selected = _bind(libssl, "SSL_SESSION_get0_alpn_selected", None, P,
                                       POINTER(ctypes.c_char_p), size_p)


def alpn_wire(protocols: tuple[str, ...]) -> bytes:
    """ALPN's wire form (RFC 7301 §3.1): each protocol name behind its one-byte length."""
    return b"".join(bytes([len(name)]) + name.encode("ascii") for name in protocols)


def selected_alpn(ssl: int) -> str | None:
    """The protocol ALPN settled on this connection, or None."""
    data, length = ctypes.c_char_p(), ctypes.c_uint()
    SSL_get0_alpn_selected(ssl, ctypes.byref(data), ctypes.byref(length))
    return ctypes.string_at(data, length.value).decode("ascii") if length.value else None


def session_alpn(session: int) -> str | None:
    """The protocol the ticket's connection settled (what 0-RTT data must be spoken in)."""
    data, length = ctypes.c_char_p(), c_size_t()
    SSL_SESSION_get0_alpn_selected(session, ctypes.byref(data), ctypes.byref(length))
    return ctypes.string_at(data, length.value).decode("ascii") if length.value else None


def error_text(default: str = "unknown OpenSSL error") -> str:
    """Drain this thread's OpenSSL error queue into one line.

    The queue is shared with the stdlib ``ssl`` module, so leaving entries behind would make a
    later, unrelated stdlib call report our error.
    """
    messages = []
    buffer = ctypes.create_string_buffer(256)
    while code := ERR_get_error():
        ERR_error_string_n(code, buffer, len(buffer))
        messages.append(buffer.value.decode(errors="replace"))
    return "; ".join(messages) or default


def read_pem_x509s(pem: bytes) -> list[int]:
    """Every certificate in a PEM blob, as X509 pointers the caller must ``X509_free``."""
    bio = BIO_new_mem_buf(pem, len(pem))
    certs: list[int] = []
    try:
        while cert := PEM_read_bio_X509(bio, None, None, None):
            certs.append(cert)
    finally:
        BIO_free(bio)
        ERR_clear_error()  # the read past the last certificate leaves PEM_R_NO_START_LINE
    if not certs:
        raise ValueError("no certificate in PEM data")
    return certs


def read_pem_private_key(pem: bytes) -> int:
    """An EVP_PKEY pointer the caller must ``EVP_PKEY_free``."""
    bio = BIO_new_mem_buf(pem, len(pem))
    try:
        key = PEM_read_bio_PrivateKey(bio, None, None, None)
    finally:
        BIO_free(bio)
    if not key:
        raise ValueError(f"cannot read private key: {error_text()}")
    return key


def drain_bio(bio: int) -> bytes:
    """Everything an SSL wrote into its outgoing memory BIO."""
    pending = BIO_ctrl_pending(bio)
    if not pending:
        return b""
    buffer = ctypes.create_string_buffer(pending)
    read = BIO_read(bio, buffer, pending)
    return buffer.raw[: max(read, 0)]
