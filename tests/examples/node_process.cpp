#include "node_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace testnode {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

// -- process ------------------------------------------------------------------

const std::string& admin_token() {
  static const std::string token = "test-admin-token-4b1d9e27c5a8";
  return token;
}

const std::string& admin_token_file() {
  static const std::string path = [] {
    auto p = (std::filesystem::temp_directory_path() /
              ("mnemo-test-admin-token-" + std::to_string(::getpid())))
                 .string();
    std::ofstream out{p, std::ios::trunc};
    out << admin_token() << "\n";
    if (!out) throw std::runtime_error("cannot write " + p);
    return p;
  }();
  return path;
}

process::process(const std::string& binary, std::vector<std::string> args,
                 std::chrono::milliseconds timeout,
                 std::vector<std::string> prefix) {
  bool admin_set = false;
  for (auto& a : args)
    if (a.rfind("--admin-token-file", 0) == 0 ||
        a.rfind("--admin-listen", 0) == 0)
      admin_set = true;
  auto off = std::find(args.begin(), args.end(), no_admin_token);
  if (off != args.end()) {
    args.erase(off);
    admin_set = true;
  }
  if (!admin_set) args.push_back("--admin-token-file=" + admin_token_file());
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    std::vector<char*> argv;
    for (auto& p : prefix) argv.push_back(const_cast<char*>(p.c_str()));
    argv.push_back(const_cast<char*>(binary.c_str()));
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    if (prefix.empty())
      ::execv(binary.c_str(), argv.data());
    else
      ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  out_fd_ = fds[0];
  ::fcntl(out_fd_, F_SETFL, ::fcntl(out_fd_, F_GETFL) | O_NONBLOCK);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{out_fd_, POLLIN, 0};
    ::poll(&p, 1, 50);
    char buf[4096];
    auto n = ::read(out_fd_, buf, sizeof(buf));
    if (n > 0) pending_.append(buf, static_cast<size_t>(n));
    auto nl = pending_.find('\n');
    if (nl != std::string::npos) {
      auto raw = pending_.substr(0, nl);
      auto line = nlohmann::json::parse(raw, nullptr, false);
      pending_.erase(0, nl + 1);
      if (line.is_object() && line.value("event", "") == "listening") {
        port_ = line.value("port", uint16_t{0});
        admin_port_ = line.value("admin_port", uint16_t{0});
        reader_ = std::thread{[this] { read_loop(); }};
        return;
      }
      early_.push_back(std::move(raw));
      continue;  // more lines may be waiting
    }
    if (n == 0) break;  // the child closed stdout: it exited
  }
  // Say what happened: the lines it printed, and whether it had exited.
  int status = 0;
  bool exited = ::waitpid(pid_, &status, WNOHANG) == pid_;
  if (exited) reaped_ = true;
  kill();
  std::string what = binary + " did not report listening (" +
                     (exited ? "exited, status " + std::to_string(status)
                             : std::string{"still running at the deadline"}) +
                     ")";
  for (auto& line : early_) what += "\n  printed: " + line;
  if (!pending_.empty()) what += "\n  printed: " + pending_;
  throw std::runtime_error(what);
}

process::~process() {
  kill();
  stop_reading_ = true;
  if (reader_.joinable()) reader_.join();
  if (out_fd_ >= 0) ::close(out_fd_);
}

void process::read_loop() {
  constexpr size_t kept = 100000;
  while (!stop_reading_) {
    pollfd p{out_fd_, POLLIN, 0};
    ::poll(&p, 1, 100);
    char buf[4096];
    auto n = ::read(out_fd_, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      break;
    }
    std::lock_guard<std::mutex> guard{out_mtx_};
    if (n == 0) {  // the child closed stdout: it exited
      if (!pending_.empty()) lines_.push_back(std::move(pending_));
      pending_.clear();
      break;
    }
    pending_.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = pending_.find('\n')) != std::string::npos) {
      lines_.push_back(pending_.substr(0, nl));
      pending_.erase(0, nl + 1);
    }
    while (lines_.size() > kept) lines_.pop_front();
  }
  reader_done_ = true;
}

void process::signal(int sig) {
  if (!reaped_) ::kill(pid_, sig);
}

std::optional<int> process::wait(std::chrono::milliseconds timeout) {
  if (reaped_) return 0;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    auto r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      return status;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
}

void process::kill() {
  if (reaped_ || pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  reaped_ = true;
}

std::vector<std::string> process::drain_stdout() {
  // What the child wrote before it exited may still be in the pipe: give
  // the reader a moment to get it (it returns at the end of the file).
  if (reaped_ && reader_.joinable())
    for (int k = 0; k < 100 && !reader_done_; ++k)
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
  std::lock_guard<std::mutex> guard{out_mtx_};
  auto lines = std::move(early_);
  early_.clear();
  lines.insert(lines.end(), std::make_move_iterator(lines_.begin()),
               std::make_move_iterator(lines_.end()));
  lines_.clear();
  return lines;
}

// -- client -------------------------------------------------------------------

struct client::impl {
  uint16_t port;
  std::string netns;
  net::io_context ioc;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;

  void close() {
    if (stream) {
      beast::error_code ignored;
      stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
      stream->close();
    }
    stream.reset();
    buffer.clear();
  }
};

client::client(uint16_t port, std::string netns)
    : impl_(std::make_unique<impl>()) {
  impl_->port = port;
  impl_->netns = std::move(netns);
}

namespace {

// A TCP socket created in network namespace `name`: a socket stays in the
// namespace it was created in, so a short-lived thread enters the
// namespace (setns affects only the calling thread) and makes it.
int socket_in_netns(const std::string& name, std::string& error) {
  int result = -1;
  std::thread worker{[&] {
    auto path = "/run/netns/" + name;
    int ns = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      error = "open " + path + ": " + std::strerror(errno);
      return;
    }
    if (::setns(ns, CLONE_NEWNET) != 0)
      error = "setns " + path + ": " + std::strerror(errno);
    else
      result = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ::close(ns);
  }};
  worker.join();
  return result;
}

}  // namespace

client::~client() {
  impl_->close();
}

std::optional<reply> client::call(const std::string& method,
                                  const std::string& target,
                                  const std::string& body) {
  sent = false;
  error.clear();
  auto& d = *impl_;
  beast::error_code ec;
  if (!d.stream) {
    d.stream.emplace(d.ioc);
    d.stream->expires_after(std::chrono::seconds{10});
    if (!d.netns.empty()) {
      int fd = socket_in_netns(d.netns, error);
      if (fd < 0) {
        error = "socket in netns '" + d.netns + "': " + error;
        d.close();
        return std::nullopt;
      }
      d.stream->socket().assign(tcp::v4(), fd, ec);
    }
    d.stream->socket().connect(
        tcp::endpoint{net::ip::make_address("127.0.0.1"), d.port}, ec);
    if (ec) {
      error = "connect: " + ec.message();
      d.close();
      return std::nullopt;
    }
  }
  http::request<http::string_body> req{http::string_to_verb(method), target,
                                       11};
  req.set(http::field::host, "127.0.0.1");
  if (!token.empty() && target.rfind("/admin", 0) == 0)
    req.set(http::field::authorization, "Bearer " + token);
  if (!body.empty()) req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.keep_alive(true);
  req.prepare_payload();
  http::write(d.stream->socket(), req, ec);
  if (ec) {
    error = "write: " + ec.message();
    d.close();
    return std::nullopt;
  }
  sent = true;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  d.stream->expires_after(std::chrono::seconds{30});
  http::read(*d.stream, d.buffer, parser, ec);
  if (ec) {
    error = "read: " + ec.message();
    d.close();
    return std::nullopt;
  }
  auto res = parser.release();
  reply result{res.result_int(), std::move(res.body()), res.keep_alive()};
  if (!result.keep_alive) d.close();
  return result;
}

std::string client::raw(const std::string& bytes,
                        std::chrono::milliseconds timeout) {
  return send_whole(bytes, 0, timeout).answer;
}

client::exchange client::send_whole(const std::string& head, size_t body_bytes,
                                    std::chrono::milliseconds timeout) {
  exchange result;
  impl_->close();
  net::io_context ioc;
  tcp::socket s{ioc};
  beast::error_code ec;
  s.connect(tcp::endpoint{net::ip::make_address("127.0.0.1"), impl_->port}, ec);
  if (ec) {
    result.write_error = "connect: " + ec.message();
    return result;
  }
  net::write(s, net::buffer(head), ec);
  const std::string chunk(64 * 1024, 'x');
  while (!ec && result.body_written < body_bytes) {
    auto n = std::min(chunk.size(), body_bytes - result.body_written);
    result.body_written += net::write(s, net::buffer(chunk.data(), n), ec);
  }
  if (ec) result.write_error = ec.message();
  // Sync reads ignore Beast's timeouts: poll the descriptor instead.
  auto& out = result.answer;
  char buf[4096];
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) break;
    pollfd p{s.native_handle(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) break;
    auto n = s.read_some(net::buffer(buf), ec);
    if (ec) break;
    out.append(buf, n);
  }
  return result;
}

std::string temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() /
             (name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::string make_cluster_certificates(const std::string& name) {
  auto dir = temp_dir(name);
  std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  std::string script =
      "cd " + dir + " && openssl req -x509" + ec +
      " -keyout ca.key -out ca.pem -days 30 -subj /CN=mnemo-test-ca &&"
      " for n in n1 n2 n3; do openssl req" +
      ec +
      " -keyout $n.key -out $n.csr -subj /CN=$n && openssl x509 -req -in"
      " $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $n.pem -days 30;"
      " done && openssl req -x509" +
      ec + " -keyout other.key -out other.pem -days 30 -subj /CN=other";
  if (std::system((script + " >/dev/null 2>&1").c_str()) != 0)
    throw std::runtime_error("openssl could not make the certificates in " +
                             dir);
  return dir;
}

}  // namespace testnode
