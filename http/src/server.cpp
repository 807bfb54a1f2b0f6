#include "mnemo/http/server.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace mnemo::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using clock = std::chrono::steady_clock;

const std::string* request::header(std::string_view name) const {
  for (auto& [n, v] : headers)
    if (n == name) return &v;
  return nullptr;
}

std::string_view request::path() const {
  std::string_view t{target};
  return t.substr(0, t.find('?'));
}

response error_response(unsigned status, const std::string& code,
                        const std::string& message) {
  return {status,
          nlohmann::json{{"error", code}, {"message", message}}.dump(),
          "application/json",
          {}};
}

namespace detail {

struct reply_slot {
  std::function<void(response)> send;
  std::atomic<bool> done{false};
};

}  // namespace detail

responder::responder(std::shared_ptr<detail::reply_slot> slot)
    : slot_(std::move(slot)) {}

responder::~responder() {
  if (slot_ && !slot_->done.exchange(true))
    slot_->send(error_response(500, "internal",
                               "the request was dropped without an answer"));
}

void responder::operator()(response res) {
  if (slot_ && !slot_->done.exchange(true)) slot_->send(std::move(res));
}

responder responder::observed(responder inner,
                              std::function<void(const response&)> see) {
  auto slot = std::make_shared<detail::reply_slot>();
  auto target = std::make_shared<responder>(std::move(inner));
  slot->send = [target, see = std::move(see)](response r) {
    see(r);
    (*target)(std::move(r));
  };
  return responder{std::move(slot)};
}

namespace {

class session;

// What sessions and responders share; outlives the I/O threads and the
// io_context, so a late reply finds it closed instead of freed memory.
struct core {
  server_options opts;
  handler fn;
  std::atomic<bool> accepting{true};

  std::mutex mtx;
  bool open = true;
  std::unordered_map<uint64_t, std::shared_ptr<session>> sessions;
  std::condition_variable closed_cv;
  uint64_t next_id = 0;

  std::mutex drain_mtx;
  std::condition_variable drain_cv;
  std::atomic<size_t> in_flight{0};

  void begin() { in_flight.fetch_add(1); }
  void end() {
    if (in_flight.fetch_sub(1) == 1) {
      std::lock_guard<std::mutex> guard{drain_mtx};
      drain_cv.notify_all();
    }
  }

  uint64_t add(std::shared_ptr<session> s);
  void remove(uint64_t id) {
    std::lock_guard<std::mutex> guard{mtx};
    sessions.erase(id);
    if (sessions.empty()) closed_cv.notify_all();
  }
  void deliver(uint64_t id, uint64_t request, response res);
};

class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket&& socket, std::shared_ptr<core> c)
      : socket_(std::move(socket)), core_(std::move(c)) {
    beast::error_code ec;
    auto remote = socket_.remote_endpoint(ec);
    if (!ec) peer_ = remote.address().to_string();
  }

  void start(uint64_t id) {
    id_ = id;
    net::dispatch(socket_.get_executor(),
                  [self = shared_from_this()] { self->read_header(); });
  }

  auto get_executor() { return socket_.get_executor(); }

  // On the session's strand: closes the connection if it has waited for
  // the client (a request, or the reading of an answer) past its deadline.
  void close_if_idle(clock::time_point now) {
    if (now > deadline_) close();
  }

  // On the session's strand.
  // `request`: the number of the request the answer is for; a late answer
  // to an earlier request never reaches a later one.
  void deliver(uint64_t request, response res) {
    if (!waiting_ || request != requests_) return;
    waiting_ = false;
    write(std::move(res), true);
  }

 private:
  void read_header() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(core_->opts.header_limit));
    parser_->body_limit(core_->opts.body_limit);
    wait_for_client();
    http::async_read_header(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) {
          self->on_header(ec);
        });
  }

  void on_header(beast::error_code ec) {
    if (ec) return fail(ec);
    if (auto len = parser_->content_length();
        len && *len > core_->opts.body_limit)
      return refuse(413, "payload_too_large",
                    "the body is over " +
                        std::to_string(core_->opts.body_limit) + " bytes");
    auto& req = parser_->get();
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      auto cont = std::make_shared<http::response<http::empty_body>>(
          http::status::continue_, 11);
      http::async_write(
          socket_, *cont,
          [self = shared_from_this(), cont](beast::error_code e, size_t) {
            if (e) return self->close();
            self->read_body();
          });
      return;
    }
    // The body usually came with the header: parse what is buffered
    // before asking the socket (and the timer) for more.
    parser_->eager(true);
    while (!parser_->is_done() && buffer_.size() > 0) {
      beast::error_code put_ec;
      auto used = parser_->put(buffer_.data(), put_ec);
      buffer_.consume(used);
      if (put_ec == http::error::need_more) break;
      if (put_ec) return fail(put_ec);
      if (used == 0) break;
    }
    if (parser_->is_done()) return on_request({});
    read_body();
  }

  void read_body() {
    wait_for_client();
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->on_request(ec);
                     });
  }

  void on_request(beast::error_code ec) {
    if (ec) return fail(ec);
    deadline_ = clock::time_point::max();
    auto msg = parser_->release();
    parser_.reset();
    keep_alive_ = msg.keep_alive();
    if (!core_->accepting) {
      keep_alive_ = false;
      return write(
          error_response(503, "shutting_down", "the node is shutting down"),
          false);
    }
    waiting_ = true;
    ++requests_;
    core_->begin();
    request req;
    req.method = std::string{msg.method_string()};
    req.target = std::string{msg.target()};
    req.body = std::move(msg.body());
    req.headers.reserve(8);
    for (auto& field : msg) {
      std::string name{field.name_string()};
      for (auto& c : name)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      req.headers.emplace_back(std::move(name), std::string{field.value()});
    }
    req.peer = peer_;
    try {
      core_->fn(std::move(req), responder{make_slot()});
    } catch (const std::exception& e) {
      deliver(requests_, error_response(500, "internal", e.what()));
    }
  }

  std::shared_ptr<detail::reply_slot> make_slot() {
    auto slot = std::make_shared<detail::reply_slot>();
    slot->send = [c = core_, id = id_, n = requests_](response r) {
      c->deliver(id, n, std::move(r));
    };
    return slot;
  }

  void fail(beast::error_code ec) {
    // A connection the idle sweep closed ends with operation_aborted.
    if (ec == http::error::end_of_stream || ec == net::error::eof ||
        ec == net::error::operation_aborted)
      return close();
    if (ec == http::error::body_limit)
      return refuse(413, "payload_too_large",
                    "the body is over " +
                        std::to_string(core_->opts.body_limit) + " bytes");
    if (ec == http::error::header_limit)
      return refuse(431, "headers_too_large",
                    "the request header is over " +
                        std::to_string(core_->opts.header_limit) + " bytes");
    if (ec.category() ==
        http::make_error_code(http::error::bad_target).category())
      return refuse(400, "bad_request",
                    "malformed HTTP request: " + ec.message());
    close();  // connection reset and the like: nobody to answer
  }

  // Answers a request the server refuses to read further, then closes
  // gracefully (`linger`).
  void refuse(unsigned status, const std::string& code,
              const std::string& message) {
    keep_alive_ = false;
    lingering_ = true;
    write(error_response(status, code, message), false);
  }

  // After a refusal: the client may still be sending the body (Python's
  // http.client and many others write the whole request before they read).
  // Closing now, with its bytes unread, would make the kernel reset the
  // connection, and the client would see a broken pipe instead of the
  // answer. So, as nginx's lingering close: send FIN, then read and discard
  // until the client closes, at most `linger_bytes` or `linger_time`.
  void linger() {
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    deadline_ = clock::now() + core_->opts.linger_time;  // the sweep's bound
    lingered_ = buffer_.size();
    buffer_.consume(buffer_.size());
    discard();
  }

  void discard() {
    if (lingered_ > core_->opts.linger_bytes) return close();
    auto buf = buffer_.prepare(16 * 1024);
    socket_.async_read_some(
        buf, [self = shared_from_this()](beast::error_code ec, size_t n) {
          if (ec) return self->close();  // the client closed: all is read
          self->lingered_ += n;
          self->discard();
        });
  }

  // Writes the answer as one buffer, formatted here: the fixed set of
  // headers of every answer needs none of Beast's field containers and
  // serializer (which cost a fifth of the I/O thread under load).
  void write(response r, bool counted) {
    auto keep = keep_alive_ && core_->accepting;
    auto reason = http::obsolete_reason(static_cast<http::status>(r.status));
    out_.clear();
    out_.append("HTTP/1.1 ").append(std::to_string(r.status)).append(" ");
    out_.append(reason.data(), reason.size());
    out_.append("\r\nServer: ").append(core_->opts.server_name);
    out_.append("\r\nContent-Type: ").append(r.content_type);
    out_.append("\r\nContent-Length: ").append(std::to_string(r.body.size()));
    for (auto& [name, value] : r.headers)
      out_.append("\r\n").append(name).append(": ").append(value);
    if (!keep) out_.append("\r\nConnection: close");
    out_.append("\r\n\r\n").append(r.body);
    wait_for_client();
    net::async_write(socket_, net::buffer(out_),
                     [self = shared_from_this(), counted, keep](
                         beast::error_code ec, size_t) {
                       if (counted) self->core_->end();
                       if (!ec && self->lingering_) return self->linger();
                       if (ec || !keep) return self->close();
                       self->read_header();
                     });
  }

  // Idle connections are closed by the server's sweep (`close_if_idle`),
  // not by a timer per operation: arming and cancelling one for every read
  // and write cost more than a tenth of the I/O thread under load.
  void wait_for_client() {
    deadline_ = clock::now() + core_->opts.idle_timeout;
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    socket_.close(ignored);
    core_->remove(id_);
  }

  tcp::socket socket_;
  std::string peer_;
  std::string out_;  // the answer being written
  clock::time_point deadline_ = clock::time_point::max();
  bool closed_ = false;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<core> core_;
  uint64_t id_ = 0;
  bool keep_alive_ = false;
  bool lingering_ = false;  // a refusal: drain the request before closing
  size_t lingered_ = 0;     // bytes discarded since
  bool waiting_ = false;
  uint64_t requests_ = 0;
};

uint64_t core::add(std::shared_ptr<session> s) {
  std::lock_guard<std::mutex> guard{mtx};
  auto id = ++next_id;
  sessions.emplace(id, std::move(s));
  return id;
}

void core::deliver(uint64_t id, uint64_t request, response res) {
  std::lock_guard<std::mutex> guard{mtx};
  if (!open) return;
  auto i = sessions.find(id);
  if (i == sessions.end()) return;
  auto s = i->second;
  net::post(s->get_executor(), [s, request, res = std::move(res)]() mutable {
    s->deliver(request, std::move(res));
  });
}

}  // namespace

// -- server
// ---------------------------------------------------------------------

struct server::impl {
  // One I/O thread (the default) runs every handler in turn, so sessions
  // need no strand, and the io_context is told so (concurrency hint 1).
  explicit impl(size_t io_threads)
      : threads_wanted(std::max<size_t>(1, io_threads)),
        ioc(static_cast<int>(threads_wanted)) {}

  size_t threads_wanted;
  // Destroyed last: queued handlers (and the sessions they hold) go first.
  net::io_context ioc;
  // Keeps `run` going while every connection waits for its handler and
  // the acceptor is closed (draining).
  net::executor_work_guard<net::io_context::executor_type> work{
      ioc.get_executor()};
  tcp::acceptor acceptor{ioc};
  std::shared_ptr<core> shared = std::make_shared<core>();
  std::vector<std::thread> threads;
  std::mutex stop_mtx;
  bool stopped = false;
  // Closes connections idle past `idle_timeout`, a few times per timeout.
  net::steady_timer sweeper{ioc};

  void sweep() {
    auto period = std::clamp<std::chrono::milliseconds>(
        shared->opts.idle_timeout / 4, std::chrono::milliseconds{10},
        std::chrono::milliseconds{1000});
    sweeper.expires_after(period);
    sweeper.async_wait([this](beast::error_code ec) {
      if (ec) return;
      std::vector<std::shared_ptr<session>> all;
      {
        std::lock_guard<std::mutex> guard{shared->mtx};
        all.reserve(shared->sessions.size());
        for (auto& entry : shared->sessions) all.push_back(entry.second);
      }
      auto now = clock::now();
      for (auto& s : all)
        net::post(s->get_executor(), [s, now] { s->close_if_idle(now); });
      sweep();
    });
  }

  void accept() {
    auto on_accept = [this](beast::error_code ec, tcp::socket s) {
      if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) {
        // Answers are written whole: do not hold them back for Nagle.
        beast::error_code ignored;
        s.set_option(tcp::no_delay(true), ignored);
        auto sess = std::make_shared<session>(std::move(s), shared);
        sess->start(shared->add(sess));
      }
      accept();
    };
    if (threads_wanted == 1)
      acceptor.async_accept(ioc.get_executor(), std::move(on_accept));
    else
      acceptor.async_accept(net::make_strand(ioc), std::move(on_accept));
  }
};

std::unique_ptr<server> server::start(server_options opts, handler fn,
                                      std::string& error) {
  auto ptr = std::make_shared<impl>(opts.threads);
  ptr->shared->opts = opts;
  ptr->shared->fn = std::move(fn);
  beast::error_code ec;
  auto address = net::ip::make_address(opts.host, ec);
  if (ec) {
    error = "bad listen address '" + opts.host + "': " + ec.message();
    return nullptr;
  }
  tcp::endpoint ep{address, opts.port};
  auto& acc = ptr->acceptor;
  acc.open(ep.protocol(), ec);
  if (!ec) acc.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    error = "cannot listen on " + opts.host + ":" + std::to_string(opts.port) +
            ": " + ec.message();
    return nullptr;
  }
  ptr->accept();
  ptr->sweep();
  for (size_t i = 0; i < ptr->threads_wanted; ++i) {
    ptr->threads.emplace_back([p = ptr.get()] { p->ioc.run(); });
    // Named for top -H, perf and /proc/PID/task (threads otherwise inherit
    // the name of the thread that made them, often a CAF one).
    ::pthread_setname_np(ptr->threads.back().native_handle(), "mnemo-http");
  }
  return std::unique_ptr<server>{new server(std::move(ptr))};
}

server::server(std::shared_ptr<impl> ptr) : impl_(std::move(ptr)) {}

server::~server() {
  stop();
}

uint16_t server::port() const noexcept {
  beast::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

void server::stop_accepting() {
  impl_->shared->accepting = false;
  net::post(impl_->acceptor.get_executor(), [p = impl_.get()] {
    beast::error_code ignored;
    p->acceptor.close(ignored);
  });
}

bool server::drain(std::chrono::milliseconds timeout) {
  auto& c = *impl_->shared;
  std::unique_lock<std::mutex> guard{c.drain_mtx};
  return c.drain_cv.wait_for(guard, timeout,
                             [&c] { return c.in_flight.load() == 0; });
}

bool server::wait_closed(std::chrono::milliseconds timeout) {
  auto& c = *impl_->shared;
  std::unique_lock<std::mutex> guard{c.mtx};
  return c.closed_cv.wait_for(guard, timeout,
                              [&c] { return c.sessions.empty(); });
}

void server::stop() {
  std::lock_guard<std::mutex> guard{impl_->stop_mtx};
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->shared->accepting = false;
  impl_->ioc.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  std::unordered_map<uint64_t, std::shared_ptr<session>> sessions;
  {
    std::lock_guard<std::mutex> g{impl_->shared->mtx};
    impl_->shared->open = false;
    sessions.swap(impl_->shared->sessions);
  }
  // The sockets close here, while the io_context still exists.
  sessions.clear();
}

size_t server::in_flight() const noexcept {
  return impl_->shared->in_flight.load();
}

}  // namespace mnemo::http
