#pragma once

// A small HTTP/1.1 server for the example nodes, on Boost.Beast: keep-alive
// connections, bounded headers and bodies, idle timeouts, and a graceful
// drain for SIGTERM. Requests go to one handler that answers asynchronously
// through a `responder`, from any thread (typically a CAF actor). Beast and
// Asio stay in the implementation file.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mnemo::http {

/// A complete request as the handler sees it.
struct request {
  /// "GET", "POST", ... as sent (Beast's verb names).
  std::string method;
  /// The request target, e.g. "/accounts/a1?x=1".
  std::string target;
  std::string body;
  /// The header fields in the order sent, names in lower case.
  std::vector<std::pair<std::string, std::string>> headers;
  /// The client's IP address as the connection sees it (no port).
  std::string peer;

  /// The value of the first header field named `name` (lower case), or
  /// null.
  const std::string* header(std::string_view name) const;

  /// The path of `target`: without the query.
  std::string_view path() const;
};

/// What the handler answers.
struct response {
  unsigned status = 200;
  std::string body;
  std::string content_type = "application/json";
  /// More header fields (`Server`, `Content-Type`, `Content-Length` and
  /// `Connection` are the server's).
  std::vector<std::pair<std::string, std::string>> headers;
};

namespace detail {
struct reply_slot;
}  // namespace detail

/// Answers one request, exactly once, from any thread. A responder dropped
/// without being called answers 500 `{"error":"internal",...}`, so a lost
/// reply never wedges a connection.
class responder {
 public:
  explicit responder(std::shared_ptr<detail::reply_slot> slot);
  responder(responder&&) noexcept = default;
  responder& operator=(responder&&) noexcept = default;
  responder(const responder&) = delete;
  responder& operator=(const responder&) = delete;
  ~responder();

  /// Sends `res`; later calls do nothing.
  void operator()(response res);

  /// A responder that shows each answer to `see` (on the answering
  /// thread), then sends it through `inner`.
  static responder observed(responder inner,
                            std::function<void(const response&)> see);

 private:
  std::shared_ptr<detail::reply_slot> slot_;
};

/// Handles one request; runs on a server thread and must not block: answer
/// through `reply` now or later.
using handler = std::function<void(request&& req, responder reply)>;

struct server_options {
  /// Address to listen on. Default: 127.0.0.1.
  std::string host = "127.0.0.1";
  /// Port; 0 picks a free one (see `server::port`). Default: 8080.
  uint16_t port = 8080;
  /// Larger bodies are answered 413 and the connection is closed.
  /// Default: 64 KiB.
  size_t body_limit = 64 * 1024;
  /// After a refusal (413, 431, 400) the server sends its answer and FIN,
  /// then reads and discards what the client still sends until it closes,
  /// at most this many bytes and this long, so that a client writing its
  /// whole body before reading (Python's http.client, for one) gets the
  /// answer instead of a connection reset. Defaults: 64 MiB, 10 s.
  size_t linger_bytes = size_t{64} << 20;
  std::chrono::milliseconds linger_time = std::chrono::seconds{10};
  /// Larger request headers are answered 431. Default: 16 KiB.
  size_t header_limit = 16 * 1024;
  /// A connection without a complete request for this long (or whose
  /// client does not read an answer for this long) is closed, by a sweep
  /// that runs every quarter of it (at most every second), so up to that
  /// much later. Default: 60 s.
  std::chrono::milliseconds idle_timeout = std::chrono::seconds{60};
  /// I/O threads. Default: 1.
  size_t threads = 1;
  /// The `Server` header. Default: "mnemo".
  std::string server_name = "mnemo";
};

/// A running server. Thread-safe; destroying it calls `stop`.
class server {
 public:
  /// Binds, listens and starts the I/O threads. Returns null and sets
  /// `error` if the address cannot be used.
  static std::unique_ptr<server> start(server_options opts, handler fn,
                                       std::string& error);

  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// The port it listens on.
  uint16_t port() const noexcept;

  /// Closes the listening socket. Requests arriving on open connections
  /// from now on are answered 503 `shutting_down` with `Connection: close`;
  /// requests already with the handler are answered normally, then their
  /// connections close.
  void stop_accepting();

  /// Waits until no request is with the handler, at most `timeout`;
  /// returns whether none is.
  bool drain(std::chrono::milliseconds timeout);

  /// Waits until every connection has closed (clients close after an
  /// answer with `Connection: close`), at most `timeout`; returns whether
  /// all have. Between `stop_accepting` and `stop` this lets a request
  /// that raced with the shutdown still get its 503 instead of a reset.
  bool wait_closed(std::chrono::milliseconds timeout);

  /// Closes every connection and joins the I/O threads. Responders still
  /// held elsewhere become no-ops.
  void stop();

  /// Requests with the handler now.
  size_t in_flight() const noexcept;

  struct impl;

 private:
  explicit server(std::shared_ptr<impl> ptr);
  std::shared_ptr<impl> impl_;
};

/// Returns `{"error":code,"message":message}` as a response with `status`.
response error_response(unsigned status, const std::string& code,
                        const std::string& message);

}  // namespace mnemo::http
