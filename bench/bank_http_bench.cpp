// bank_http_bench: durable deposits and transfers over HTTP against a real
// mnemo-bank-node process, from `connections` keep-alive connections (one
// request in flight on each), driven by one client thread with epoll.
// One JSON object per line.
//
//   bank_http_bench [--quick] [--node PATH] [--dir PATH] [--connections N]
//                   [--seconds S] [--durability MODE] [--http-threads N]
//                   [--node-arg ARG]...   (passed on to the node)

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace fs = std::filesystem;
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;

namespace {

[[noreturn]] void die(const std::string& what) {
  std::cerr << "bank_http_bench: " << what << "\n";
  std::exit(1);
}

// The node as a child process; reads its "listening" line for the port.
struct node_process {
  pid_t pid = -1;
  uint16_t port = 0;

  node_process(const std::string& binary, std::vector<std::string> args) {
    int fds[2];
    if (::pipe(fds) != 0) die("pipe");
    pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the driver
      ::dup2(fds[1], STDOUT_FILENO);
      ::close(fds[0]);
      ::close(fds[1]);
      std::vector<char*> argv{const_cast<char*>(binary.c_str())};
      for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(binary.c_str(), argv.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    std::string line;
    char ch;
    while (::read(fds[0], &ch, 1) == 1 && ch != '\n') line += ch;
    ::close(fds[0]);
    auto j = json::parse(line, nullptr, false);
    if (!j.is_object() || j.value("event", "") != "listening")
      die("the node did not start: " + line);
    port = j.value("port", uint16_t{0});
  }

  ~node_process() {
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
  }
};

// The driver's event loop: keep-alive connections, each with one request in
// flight, on one thread with epoll. It shares the machine's two cores with
// the node, so it does as little as it can per request: one write() of the
// preformatted request and, when epoll reports the answer, usually one
// read(). (Boost.Asio with Beast took 17-20 us of CPU per request, this
// loop 12-13 us, at about 23k requests/s.)
// Answers are parsed only as far as the status code and Content-Length;
// the node sends no other framing.
class client_loop {
 public:
  // A request in wire format: the client formats it once.
  using make_fn = std::function<std::string()>;
  using done_fn = std::function<void(unsigned status, double ms)>;

  client_loop() : ep_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (ep_ < 0) die("epoll_create1");
  }
  ~client_loop() {
    for (auto& c : conns_) ::close(c.fd);
    ::close(ep_);
  }
  client_loop(const client_loop&) = delete;
  client_loop& operator=(const client_loop&) = delete;

  // Connects to 127.0.0.1:`port` and sends the first request of `next`.
  void add(uint16_t port, make_fn next, done_fn done) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
      die(std::string{"connect: "} + std::strerror(errno));
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    conns_.push_back(conn{fd, std::move(next), std::move(done), {}, {}});
  }

  // Runs until every connection has stopped: a connection stops instead of
  // sending its next request once `stop()` returns true. `tick()` runs at
  // least every millisecond.
  void run(const std::function<bool()>& stop,
           const std::function<void()>& tick) {
    for (size_t i = 0; i < conns_.size(); ++i) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = i;
      if (::epoll_ctl(ep_, EPOLL_CTL_ADD, conns_[i].fd, &ev) != 0)
        die("epoll_ctl");
      send(conns_[i]);
    }
    size_t active = conns_.size();
    std::vector<epoll_event> events(conns_.size());
    std::vector<char> buf(1 << 16);
    while (active > 0) {
      int n =
          ::epoll_wait(ep_, events.data(), static_cast<int>(events.size()), 1);
      if (n < 0 && errno != EINTR) die("epoll_wait");
      tick();
      for (int e = 0; e < n; ++e) {
        auto& c = conns_[events[e].data.u64];
        auto got = ::read(c.fd, buf.data(), buf.size());
        if (got == 0) die("read: the node closed a connection");
        if (got < 0) {
          if (errno == EAGAIN || errno == EINTR) continue;
          die(std::string{"read: "} + std::strerror(errno));
        }
        c.in.append(buf.data(), static_cast<size_t>(got));
        unsigned status = 0;
        if (!complete(c.in, status)) continue;
        c.done(status,
               std::chrono::duration<double, std::milli>(steady::now() - c.t0)
                   .count());
        if (stop()) {
          --active;
          continue;
        }
        send(c);
      }
    }
  }

 private:
  struct conn {
    int fd;
    make_fn next;
    done_fn done;
    std::string in;
    steady::time_point t0{};
  };

  void send(conn& c) {
    auto req = c.next();
    c.in.clear();
    c.t0 = steady::now();
    // A few hundred bytes on loopback: the socket buffer takes them at
    // once; if not, wait (rare, and only the driver's time).
    size_t off = 0;
    while (off < req.size()) {
      auto n = ::write(c.fd, req.data() + off, req.size() - off);
      if (n < 0 && errno != EAGAIN && errno != EINTR)
        die(std::string{"write: "} + std::strerror(errno));
      if (n > 0) off += static_cast<size_t>(n);
    }
  }

  // Whether `in` holds a whole answer; sets its status code.
  static bool complete(const std::string& in, unsigned& status) {
    auto end = in.find("\r\n\r\n");
    if (end == std::string::npos) return false;
    if (in.compare(0, 9, "HTTP/1.1 ") != 0) die("bad status line: " + in);
    status = static_cast<unsigned>(std::atoi(in.c_str() + 9));
    size_t length = 0;
    for (size_t at = in.find("\r\n"); at < end; at = in.find("\r\n", at + 2)) {
      static constexpr char name[] = "content-length:";
      constexpr size_t len = sizeof(name) - 1;
      if (end - at - 2 < len) continue;
      bool match = true;
      for (size_t i = 0; i < len && match; ++i)
        match =
            std::tolower(static_cast<unsigned char>(in[at + 2 + i])) == name[i];
      if (match) length = std::strtoul(in.c_str() + at + 2 + len, nullptr, 10);
    }
    return in.size() >= end + 4 + length;
  }

  int ep_;
  std::vector<conn> conns_;
};

std::string post(const std::string& target, const std::string& body) {
  return "POST " + target +
         " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
         "application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string get(const std::string& target) {
  return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
}

struct run_result {
  size_t requests = 0;
  size_t unexpected = 0;
  double seconds = 0;
  std::vector<double> latencies;
};

// Runs `connections` connections for `seconds` (after a warm-up of a tenth
// of it), each sending `make(connection index, sequence)`.
run_result drive(uint16_t port, size_t connections, double seconds,
                 unsigned expected_status,
                 std::function<std::string(size_t, size_t)> make) {
  client_loop loop;
  bool measuring = false;
  bool stop = false;
  run_result out;
  steady::time_point measured_from;
  auto warm = steady::now() + std::chrono::duration_cast<steady::duration>(
                                  std::chrono::duration<double>(seconds / 10));
  auto end = warm + std::chrono::duration_cast<steady::duration>(
                        std::chrono::duration<double>(seconds));
  for (size_t c = 0; c < connections; ++c) {
    loop.add(
        port, [c, seq = size_t{0}, &make]() mutable { return make(c, seq++); },
        [&](unsigned status, double ms) {
          if (!measuring) return;
          ++out.requests;
          if (status != expected_status) ++out.unexpected;
          out.latencies.push_back(ms);
        });
  }
  loop.run([&] { return stop; },
           [&] {
             auto now = steady::now();
             if (!measuring && !stop && now >= warm) {
               measuring = true;
               measured_from = now;
             }
             if (measuring && now >= end) {
               measuring = false;
               stop = true;
               out.seconds =
                   std::chrono::duration<double>(now - measured_from).count();
             }
           });
  return out;
}

// Sends `total` requests `make(k)` over `connections` connections; returns
// how many were not answered 2xx.
size_t send_all(uint16_t port, size_t connections, size_t total,
                std::function<std::string(size_t)> make) {
  client_loop loop;
  size_t next = 0;
  size_t failed = 0;
  for (size_t c = 0; c < std::min(connections, total); ++c)
    loop.add(
        port, [&] { return make(next++); },
        [&](unsigned status, double) {
          if (status < 200 || status >= 300) ++failed;
        });
  loop.run([&] { return next >= total; }, [] {});
  return failed;
}

// Reads a counter or gauge (without labels) from the node's /metrics.
double scrape(uint16_t port, const std::string& name) {
  net::io_context ioc;
  beast::tcp_stream s{ioc};
  s.connect(tcp::endpoint{net::ip::make_address("127.0.0.1"), port});
  http::request<http::string_body> req{http::verb::get, "/metrics", 11};
  req.set(http::field::host, "127.0.0.1");
  http::write(s, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  auto& text = res.body();
  auto at = text.find("\n" + name + " ");
  if (at == std::string::npos) return 0;
  return std::stod(text.substr(at + name.size() + 2));
}

double pct(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return std::round(v[static_cast<size_t>(q * (v.size() - 1))] * 100) / 100;
}

}  // namespace

int main(int argc, char** argv) {
  std::string node_bin = MNEMO_BANK_NODE;
  fs::path dir = fs::temp_directory_path();
  size_t connections = 64;
  double seconds = 10;
  std::string durability = "sync";
  std::string http_threads = "1";
  std::vector<std::string> node_args;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value of " + arg);
      return argv[++i];
    };
    if (arg == "--quick")
      seconds = 2;
    else if (arg == "--node")
      node_bin = value();
    else if (arg == "--dir")
      dir = value();
    else if (arg == "--connections")
      connections = std::stoul(value());
    else if (arg == "--seconds")
      seconds = std::stod(value());
    else if (arg == "--durability")
      durability = value();
    else if (arg == "--http-threads")
      http_threads = value();
    else if (arg == "--node-arg")
      node_args.push_back(value());
    else
      die("unknown option " + arg);
  }
  auto data = dir / "mnemo-http-bench";
  fs::remove_all(data);
  constexpr size_t accounts = 1000;
  {
    std::vector<std::string> args{"--data",
                                  data.string(),
                                  "--listen",
                                  "127.0.0.1:0",
                                  "--durability",
                                  durability,
                                  "--initial-map-mib=1024",
                                  "--http-threads=" + http_threads};
    args.insert(args.end(), node_args.begin(), node_args.end());
    node_process node{node_bin, args};
    auto acct = [](size_t k) { return "a" + std::to_string(k % accounts); };
    // Open and fund the accounts over HTTP too.
    auto setup = send_all(node.port, 16, 2 * accounts, [&](size_t k) {
      if (k < accounts)
        return post("/accounts", R"({"id":")" + acct(k) + R"(","owner":"o"})");
      return post("/accounts/" + acct(k) + "/deposits",
                  R"({"amount":1000000000})");
    });
    if (setup != 0) die(std::to_string(setup) + " setup requests failed");
    struct journal_counts {
      double commits, events, commit_s;
    };
    auto counts = [&] {
      return journal_counts{
          scrape(node.port, "mnemo_journal_commits_total"),
          scrape(node.port, "mnemo_journal_events_total"),
          scrape(node.port, "mnemo_journal_commit_seconds_sum")};
    };
    auto before = counts();
    auto report = [&](const char* bench, run_result& r) {
      auto after = counts();
      auto commits = after.commits - before.commits;
      auto events_per_commit =
          commits > 0 ? (after.events - before.events) / commits : 0;
      auto commit_ms =
          commits > 0 ? (after.commit_s - before.commit_s) / commits * 1e3 : 0;
      before = after;
      std::cout << json{{"bench", bench},
                        {"connections", connections},
                        {"durability", durability},
                        {"http_threads", std::stoi(http_threads)},
                        {"seconds", std::round(r.seconds * 100) / 100},
                        {"requests", r.requests},
                        {"requests_per_s",
                         std::llround(r.requests / r.seconds)},
                        {"p50_ms", pct(r.latencies, 0.5)},
                        {"p99_ms", pct(r.latencies, 0.99)},
                        {"unexpected_status", r.unexpected},
                        {"events_per_commit",
                         std::round(events_per_commit * 10) / 10},
                        {"commit_ms", std::round(commit_ms * 100) / 100},
                        {"allocator", MNEMO_ALLOCATOR}}
                       .dump()
                << std::endl;
    };
    auto deposits =
        drive(node.port, connections, seconds, 200, [&](size_t c, size_t k) {
          return post("/accounts/" + acct(c * 7919 + k) + "/deposits",
                      R"({"amount":1,"command_id":"d-)" + std::to_string(c) +
                          "-" + std::to_string(k) + R"("})");
        });
    report("bank.http.deposits", deposits);
    // The HTTP layer alone: a read of the balances read model on the I/O
    // thread, no actor and no journal write (the ceiling of the layer).
    auto reads = drive(node.port, connections, seconds / 2, 200,
                       [&](size_t c, size_t k) {
                         return get("/balances/" + acct(c * 7919 + k));
                       });
    report("bank.http.balance_reads", reads);
    auto transfers =
        drive(node.port, connections, seconds, 202, [&](size_t c, size_t k) {
          auto from = c * 7919 + k;
          return post("/transfers", R"({"id":"t-)" + std::to_string(c) + "-" +
                                        std::to_string(k) + R"(","from":")" +
                                        acct(from) + R"(","to":")" +
                                        acct(from + 1) + R"(","amount":1})");
        });
    report("bank.http.transfers", transfers);
  }
  fs::remove_all(data);
  return 0;
}
