#include "child_modes.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_support.hpp"

namespace mnemo::test {

namespace {

using namespace mnemo::persistence;

void write_line(const std::string& line) {
  // One write per line keeps lines whole even when the process is killed.
  auto text = line + "\n";
  auto rc = ::write(STDOUT_FILENO, text.data(), text.size());
  (void)rc;
}

// Appends batches of 1-3 events to 8 streams with 16 appends in flight, in
// sync mode, forever; reports every acknowledged batch as one line
// "ack <stream> <tag> <first_seq> <last_seq> <first_pos> <last_pos>".
int crash_writer(int argc, char** argv) {
  if (argc < 2) return 2;
  std::string dir = argv[0];
  std::string round = argv[1];
  journal_config cfg;
  cfg.directory = dir;
  cfg.mode = durability::sync;
  auto j = journal::open(cfg);
  if (!j) {
    write_line("error " + j.error().to_string());
    return 1;
  }
  std::mutex mtx;
  std::condition_variable cv;
  int in_flight = 0;
  std::minstd_rand rng{static_cast<unsigned>(::getpid())};
  write_line("ready");
  for (uint64_t batch = 0;; ++batch) {
    {
      std::unique_lock<std::mutex> guard{mtx};
      cv.wait(guard, [&] { return in_flight < 16; });
      ++in_flight;
    }
    auto n = 1 + rng() % 3;
    auto stream = "s-" + std::to_string(rng() % 8);
    auto tag = round + ":" + std::to_string(batch);
    std::vector<new_event> events;
    for (size_t i = 0; i < n; ++i)
      events.push_back(make_event("test.crash", tag + ":" + std::to_string(i) +
                                                    "/" + std::to_string(n)));
    (*j)->append(stream, std::move(events), expected_version::any(),
                 [&, stream, tag](expected<append_result> res) {
                   if (res) {
                     auto& ev = res->events;
                     write_line("ack " + stream + " " + tag + " " +
                                std::to_string(ev.front().sequence) + " " +
                                std::to_string(ev.back().sequence) + " " +
                                std::to_string(ev.front().position) + " " +
                                std::to_string(ev.back().position));
                   } else {
                     write_line("error " + res.error().to_string());
                   }
                   std::lock_guard<std::mutex> guard{mtx};
                   --in_flight;
                   cv.notify_one();
                 });
  }
}

// Opens the journal in `dir` in sync mode; prints "open-error <error>" and
// returns null if that fails.
std::unique_ptr<journal> open_sync(const std::string& dir) {
  journal_config cfg;
  cfg.directory = dir;
  cfg.mode = durability::sync;
  auto j = journal::open(cfg);
  if (!j) {
    write_line("open-error " + j.error().to_string());
    return nullptr;
  }
  return std::move(j).value();
}

// Limits the file size to argv[1] bytes, then appends 4 KiB events until an
// append fails; prints "acked <n>", the failure, and the error of one more
// append (which must be the sticky failure).
int fsize_writer(int argc, char** argv) {
  if (argc < 2) return 2;
  ::signal(SIGXFSZ, SIG_IGN);
  rlimit limit{};
  limit.rlim_cur = limit.rlim_max = std::stoull(argv[1]);
  if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return 3;
  auto j = open_sync(argv[0]);
  if (!j) return 1;
  std::string blob(4096, 'x');
  for (uint64_t n = 0;; ++n) {
    auto res = j->append("big", {make_event("test.big", blob)},
                         expected_version::any());
    if (!res) {
      write_line("acked " + std::to_string(n));
      write_line("failed " + std::string{to_string(res.error().code())} + " " +
                 res.error().message());
      auto again = j->append("big", {make_event("test.big", "small")},
                             expected_version::any());
      write_line("again " +
                 std::string{again ? "ok" : to_string(again.error().code())} +
                 " " + (again ? "" : again.error().message()));
      return 0;
    }
  }
}

// Appends argv[1] one-event commits to streams "s-0".."s-3" in turn, in
// sync mode, each acknowledged before the next; prints "done" and exits
// without closing the journal, as a crash right after would.
int unclosed_writer(int argc, char** argv) {
  if (argc < 2) return 2;
  auto j = open_sync(argv[0]);
  if (!j) return 1;
  auto commits = std::stoull(argv[1]);
  for (uint64_t i = 0; i < commits; ++i) {
    auto res = j->append("s-" + std::to_string(i % 4),
                         {make_event("test.unclosed", std::to_string(i))},
                         expected_version::any());
    if (!res) {
      write_line("error " + res.error().to_string());
      return 1;
    }
  }
  write_line("done");
  ::_exit(0);
}

// Opens the journal in argv[0], read-only if argv[1] is "ro", and prints
// "ok" or the error.
int try_open(int argc, char** argv) {
  if (argc < 2) return 2;
  journal_config cfg;
  cfg.directory = argv[0];
  cfg.read_only = std::string{argv[1]} == "ro";
  auto j = journal::open(cfg);
  write_line(j ? std::string{"ok"} : j.error().to_string());
  return 0;
}

}  // namespace

int run_child(const std::string& mode, int argc, char** argv) {
  if (mode == "crash-writer") return crash_writer(argc, argv);
  if (mode == "fsize-writer") return fsize_writer(argc, argv);
  if (mode == "unclosed-writer") return unclosed_writer(argc, argv);
  if (mode == "try-open") return try_open(argc, argv);
  std::fprintf(stderr, "unknown child mode %s\n", mode.c_str());
  return 2;
}

child_process spawn_child(const std::string& mode,
                          const std::vector<std::string>& args) {
  int fds[2];
  if (::pipe(fds) != 0) return {};
  std::vector<std::string> argv_strings{"/proc/self/exe", "--child=" + mode};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  // Build argv before fork: the child may only exec.
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  char exe[4096];
  auto len = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (len <= 0) return {};
  exe[len] = '\0';
  auto pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execv(exe, argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  return child_process{pid, fds[0]};
}

child_result finish_child(child_process child) {
  child_result result;
  char buf[4096];
  for (;;) {
    auto n = ::read(child.out_fd, buf, sizeof(buf));
    if (n <= 0) break;
    result.out.append(buf, static_cast<size_t>(n));
  }
  ::close(child.out_fd);
  int status = 0;
  ::waitpid(child.pid, &status, 0);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  return result;
}

}  // namespace mnemo::test
