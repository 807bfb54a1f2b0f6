// Works around a bug of caf::openssl 0.17: a TLS connection that fails
// (a peer's failed handshake, garbage on the port, a peer killed) leaves
// its OpenSSL errors in the multiplexer thread's error queue. OpenSSL's
// `SSL_get_error` reports any queued error as the error of the call it is
// asked about, so the next read of every other connection on that thread,
// which would only have "wanted more data", failed too and CAF closed the
// links between healthy members (tests/examples/bank_cluster_tls_test.cpp).
//
// OpenSSL requires the queue to be empty before each TLS I/O call, which
// CAF does not ensure. These definitions of the four calls caf::openssl
// makes take precedence over libssl's for the whole process (the linker
// exports them because libcaf_openssl needs them): each one empties the
// queue and calls libssl's own function.



#include <openssl/err.h>
#include <openssl/ssl.h>

#include "interpose.hpp"

namespace mnemo::runtime::detail {

namespace {

template <class Fn>
Fn next(const char* name) {
  return next_definition<Fn>(name, "libssl");
}

}  // namespace

/// Referenced by cluster.cpp so that this file is always linked with it.
bool openssl_errors_isolated() noexcept {
  return true;
}

}  // namespace mnemo::runtime::detail

using mnemo::runtime::detail::next;

extern "C" {

int SSL_read(SSL* ssl, void* buf, int num) {
  static auto real = next<int (*)(SSL*, void*, int)>("SSL_read");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_write(SSL* ssl, const void* buf, int num) {
  static auto real = next<int (*)(SSL*, const void*, int)>("SSL_write");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_connect(SSL* ssl) {
  static auto real = next<int (*)(SSL*)>("SSL_connect");
  ERR_clear_error();
  return real(ssl);
}

int SSL_accept(SSL* ssl) {
  static auto real = next<int (*)(SSL*)>("SSL_accept");
  ERR_clear_error();
  return real(ssl);
}

}  // extern "C"
