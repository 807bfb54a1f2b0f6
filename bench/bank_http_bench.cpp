// bank_http_bench: durable deposits and transfers over HTTP against a real
// mnemo-bank-node process, from `connections` keep-alive connections (one
// request in flight on each), driven by one asynchronous client thread.
// One JSON object per line.
//
//   bank_http_bench [--quick] [--node PATH] [--dir PATH] [--connections N]
//                   [--seconds S] [--durability MODE] [--http-threads N]
//                   [--node-arg ARG]...   (passed on to the node)

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
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

// One keep-alive connection sending the requests `next` makes.
class connection : public std::enable_shared_from_this<connection> {
 public:
  // A request in wire format: the client formats it once, so that the
  // driver spends as little of the machine's two cores as it can.
  using make_fn = std::function<std::string()>;
  using done_fn = std::function<void(unsigned status, double ms)>;

  connection(net::io_context& ioc, make_fn next, done_fn done)
      : stream_(ioc), next_(std::move(next)), done_(std::move(done)) {}

  void start(const tcp::endpoint& ep, const bool* stop) {
    stop_ = stop;
    stream_.async_connect(ep,
                          [self = shared_from_this()](beast::error_code ec) {
                            if (ec) die("connect: " + ec.message());
                            self->send();
                          });
  }

 private:
  void send() {
    if (*stop_) return;
    req_ = next_();
    t0_ = steady::now();
    net::async_write(stream_, net::buffer(req_),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) die("write: " + ec.message());
                       self->res_ = {};
                       http::async_read(
                           self->stream_, self->buffer_, self->res_,
                           [self](beast::error_code e, size_t) {
                             if (e) die("read: " + e.message());
                             self->done_(
                                 self->res_.result_int(),
                                 std::chrono::duration<double, std::milli>(
                                     steady::now() - self->t0_)
                                     .count());
                             self->send();
                           });
                     });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::string req_;
  http::response<http::string_body> res_;
  make_fn next_;
  done_fn done_;
  steady::time_point t0_;
  const bool* stop_ = nullptr;
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
  net::io_context ioc{1};
  tcp::endpoint ep{net::ip::make_address("127.0.0.1"), port};
  bool stop = false;
  bool measuring = false;
  run_result out;
  steady::time_point t0;
  std::vector<std::shared_ptr<connection>> conns;
  for (size_t c = 0; c < connections; ++c) {
    auto seq = std::make_shared<size_t>(0);
    conns.push_back(std::make_shared<connection>(
        ioc, [c, seq, &make] { return make(c, (*seq)++); },
        [&](unsigned status, double ms) {
          if (!measuring) return;
          ++out.requests;
          if (status != expected_status) ++out.unexpected;
          out.latencies.push_back(ms);
        }));
    conns.back()->start(ep, &stop);
  }
  net::steady_timer warm{ioc, std::chrono::duration_cast<steady::duration>(
                                  std::chrono::duration<double>(seconds / 10))};
  net::steady_timer end{ioc};
  warm.async_wait([&](beast::error_code) {
    measuring = true;
    t0 = steady::now();
    end.expires_after(std::chrono::duration_cast<steady::duration>(
        std::chrono::duration<double>(seconds)));
    end.async_wait([&](beast::error_code) {
      measuring = false;
      stop = true;
      out.seconds = std::chrono::duration<double>(steady::now() - t0).count();
    });
  });
  ioc.run();
  return out;
}

// Sends `total` requests `make(k)` over `connections` connections; returns
// how many were not answered 2xx.
size_t send_all(uint16_t port, size_t connections, size_t total,
                std::function<std::string(size_t)> make) {
  net::io_context ioc{1};
  tcp::endpoint ep{net::ip::make_address("127.0.0.1"), port};
  size_t next = 0;
  size_t answered = 0;
  size_t failed = 0;
  bool stop = false;
  std::vector<std::shared_ptr<connection>> conns;
  for (size_t c = 0; c < std::min(connections, total); ++c) {
    conns.push_back(std::make_shared<connection>(
        ioc,
        [&] {
          auto k = next++;
          if (next >= total) stop = true;
          return make(k);
        },
        [&](unsigned status, double) {
          if (status < 200 || status >= 300) ++failed;
          ++answered;
        }));
    conns.back()->start(ep, &stop);
  }
  ioc.run();
  return failed + (total - answered);
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
                        {"commit_ms", std::round(commit_ms * 100) / 100}}
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
