// Data-parallel collectives across the processes of an `mpirun` job, for lib/train/loop/dist.ts.
// MPI is loaded at run time (dlopen of Open MPI's libmpi.so.40), never linked: the addon builds
// and loads where no MPI is installed, and a plain `node` run (world size 1) never touches it.
// The handles are Open MPI's ABI: MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ... are the addresses of
// the globals ompi_mpi_comm_world, ompi_mpi_float, ompi_mpi_op_sum, ..., and MPI_IN_PLACE is
// (void*)1, so no mpi.h is needed to build. Every collective is the non-blocking form waited on
// with a deadline: a rank that died or stopped turns into a JS error on the others, never a hang
// (Open MPI's launcher usually ends the job first, when a rank exits non-zero). Communication
// errors return codes (MPI_ERRORS_RETURN) and become JS exceptions; nothing here aborts.
//
// Tensors on a backend with its own collectives (cuda: NCCL, cuda/nccl.cu) are summed on the
// device; NCCL's unique id is broadcast over MPI. Other device buffers go through host memory.
#include <napi.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../runtime_library.h"
#include "args.h"

namespace rt::napi {

namespace {

using MpiHandle = void*;

struct Mpi {
  RuntimeLibrary library;
  int (*init_thread)(int*, char***, int, int*) = nullptr;
  int (*comm_rank)(MpiHandle, int*) = nullptr;
  int (*comm_size)(MpiHandle, int*) = nullptr;
  int (*comm_set_errhandler)(MpiHandle, MpiHandle) = nullptr;
  int (*iallreduce)(const void*, void*, int, MpiHandle, MpiHandle, MpiHandle, MpiHandle*) = nullptr;
  int (*ibcast)(void*, int, MpiHandle, int, MpiHandle, MpiHandle*) = nullptr;
  int (*iallgather)(const void*, int, MpiHandle, void*, int, MpiHandle, MpiHandle, MpiHandle*) = nullptr;
  int (*ibarrier)(MpiHandle, MpiHandle*) = nullptr;
  int (*test)(MpiHandle*, int*, void*) = nullptr;
  int (*error_string)(int, char*, int*) = nullptr;
  int (*finalize)() = nullptr;
  MpiHandle world = nullptr, f32 = nullptr, f64 = nullptr, byte = nullptr, sum = nullptr, max = nullptr,
            errors_return = nullptr;
};

Mpi mpi;
bool initialized = false;
bool finalized = false;
int world_rank = 0;
int world_size = 1;
double timeout_seconds = 0;  // set by distInit (REALTUNE_DIST_TIMEOUT)
std::string library_name;
bool device_comm_ready = false;

// mpirun ends a job whose rank died by sending SIGTERM to the others. A rank waiting in a
// collective then fails with an error saying so (rather than vanishing without a word); one
// that is computing says so on stderr and ends as SIGTERM would have ended it.
volatile sig_atomic_t terminate_requested = 0;
volatile sig_atomic_t in_collective = 0;
char terminate_message[256];
size_t terminate_message_length = 0;
struct sigaction previous_terminate {};

void on_terminate(int signal) {
  terminate_requested = 1;
  if (in_collective) return;
  ssize_t ignored = write(STDERR_FILENO, terminate_message, terminate_message_length);
  (void)ignored;
  // Then what SIGTERM did before (Node resets the terminal and re-raises it).
  if ((previous_terminate.sa_flags & SA_SIGINFO) == 0 && previous_terminate.sa_handler != SIG_DFL && previous_terminate.sa_handler != SIG_IGN) {
    previous_terminate.sa_handler(signal);
  }
  _exit(128 + SIGTERM);
}

// Installs on_terminate in front of whatever handled SIGTERM (Node's own handler).
void handle_terminate() {
  if (sigaction(SIGTERM, nullptr, &previous_terminate) != 0 || (previous_terminate.sa_flags & SA_SIGINFO) != 0) return;
  const std::string text = "realtune (rank " + std::to_string(world_rank) + " of " + std::to_string(world_size) +
                           "): stopped by mpirun, which ends the job when a rank fails or dies (see its message)\n";
  terminate_message_length = std::min(text.size(), sizeof terminate_message);
  std::memcpy(terminate_message, text.data(), terminate_message_length);
  struct sigaction action {};
  action.sa_handler = on_terminate;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
}

struct CollectiveScope {
  CollectiveScope() { in_collective = 1; }
  ~CollectiveScope() { in_collective = 0; }
};

constexpr int kThreadFunneled = 1;
void* const kInPlace = reinterpret_cast<void*>(1);
// MPI counts are ints: larger buffers go in pieces of this many elements.
constexpr size_t kMaxCount = size_t(1) << 30;

std::string mpi_error(int code) {
  if (mpi.error_string == nullptr) return "MPI error " + std::to_string(code);
  char text[512];
  int length = 0;
  if (mpi.error_string(code, text, &length) != 0) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<size_t>(length));
}

void check(int code, const std::string& what) {
  if (code != 0) fail("data-parallel: " + what + " failed on rank " + std::to_string(world_rank) + ": " + mpi_error(code));
}

// Waits for a non-blocking collective; past the deadline the other ranks are taken to be gone.
void wait(MpiHandle request, const std::string& what) {
  CollectiveScope scope;
  const auto start = std::chrono::steady_clock::now();
  for (long polls = 0;; ++polls) {
    if (terminate_requested) {
      fail("data-parallel: rank " + std::to_string(world_rank) + " of " + std::to_string(world_size) + " was stopped by mpirun while waiting for " +
           what + ": another rank failed or died (see mpirun's message)");
    }
    int done = 0;
    check(mpi.test(&request, &done, nullptr), what);
    if (done) return;
    // Open MPI moves a non-blocking collective on only inside MPI calls: keep testing (as its
    // blocking calls spin), yielding the core to a rank that shares it.
    std::this_thread::yield();
    if (polls % 1024 != 0) continue;
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > timeout_seconds) {
      fail("data-parallel: rank " + std::to_string(world_rank) + " of " + std::to_string(world_size) + " waited " +
           std::to_string(static_cast<int>(timeout_seconds)) + " s for " + what +
           " without the other ranks taking part: another rank stopped or is stuck (see its error above); "
           "REALTUNE_DIST_TIMEOUT sets the limit in seconds");
    }
  }
}

void load_mpi(const std::string& launcher) {
  const char* requested = std::getenv("REALTUNE_LIBMPI");
  library_name = requested != nullptr && *requested != '\0' ? requested : "libmpi.so.40";
  mpi.library.open(library_name, "data-parallel: running under mpirun (" + launcher + ")",
                   "install Open MPI (Debian: apt-get install openmpi-bin), or set REALTUNE_LIBMPI to its libmpi.so");
  mpi.init_thread = mpi.library.symbol<decltype(mpi.init_thread)>("MPI_Init_thread");
  mpi.comm_rank = mpi.library.symbol<decltype(mpi.comm_rank)>("MPI_Comm_rank");
  mpi.comm_size = mpi.library.symbol<decltype(mpi.comm_size)>("MPI_Comm_size");
  mpi.comm_set_errhandler = mpi.library.symbol<decltype(mpi.comm_set_errhandler)>("MPI_Comm_set_errhandler");
  mpi.iallreduce = mpi.library.symbol<decltype(mpi.iallreduce)>("MPI_Iallreduce");
  mpi.ibcast = mpi.library.symbol<decltype(mpi.ibcast)>("MPI_Ibcast");
  mpi.iallgather = mpi.library.symbol<decltype(mpi.iallgather)>("MPI_Iallgather");
  mpi.ibarrier = mpi.library.symbol<decltype(mpi.ibarrier)>("MPI_Ibarrier");
  mpi.test = mpi.library.symbol<decltype(mpi.test)>("MPI_Test");
  mpi.error_string = mpi.library.symbol<decltype(mpi.error_string)>("MPI_Error_string");
  mpi.finalize = mpi.library.symbol<decltype(mpi.finalize)>("MPI_Finalize");
  mpi.world = mpi.library.symbol<MpiHandle>("ompi_mpi_comm_world");
  mpi.f32 = mpi.library.symbol<MpiHandle>("ompi_mpi_float");
  mpi.f64 = mpi.library.symbol<MpiHandle>("ompi_mpi_double");
  mpi.byte = mpi.library.symbol<MpiHandle>("ompi_mpi_byte");
  mpi.sum = mpi.library.symbol<MpiHandle>("ompi_mpi_op_sum");
  mpi.max = mpi.library.symbol<MpiHandle>("ompi_mpi_op_max");
  mpi.errors_return = mpi.library.symbol<MpiHandle>("ompi_mpi_errors_return");
}

void require_initialized(const char* op) {
  if (!initialized || finalized) fail(std::string(op) + ": data-parallel is not initialised (call distInit first) or was finalised");
}

MpiHandle reduce_op(const std::string& name, const char* op) {
  if (name == "sum") return mpi.sum;
  if (name == "max") return mpi.max;
  fail(std::string(op) + ": op must be \"sum\" or \"max\", got \"" + name + "\"", Error::range);
}

void allreduce_host(void* data, size_t count, MpiHandle type, size_t element_bytes, MpiHandle op, const std::string& what) {
  char* bytes = static_cast<char*>(data);
  for (size_t done = 0; done < count; done += kMaxCount) {
    const int n = static_cast<int>(std::min(kMaxCount, count - done));
    MpiHandle request = nullptr;
    check(mpi.iallreduce(kInPlace, bytes + done * element_bytes, n, type, op, mpi.world, &request), what);
    wait(request, what);
  }
}

void broadcast_bytes(void* data, size_t bytes, int root, const std::string& what) {
  char* p = static_cast<char*>(data);
  for (size_t done = 0; done < bytes; done += kMaxCount) {
    const int n = static_cast<int>(std::min(kMaxCount, bytes - done));
    MpiHandle request = nullptr;
    check(mpi.ibcast(p + done, n, mpi.byte, root, mpi.world, &request), what);
    wait(request, what);
  }
}

// The device collectives of `b` joined on every rank: rank 0 makes the id, MPI carries it.
void ensure_device_comm(Backend& b) {
  if (device_comm_ready) return;
  std::vector<char> id(512);
  size_t length = 0;
  if (world_rank == 0) length = b.comm_unique_id(id.data(), id.size());
  uint64_t length64 = length;
  broadcast_bytes(&length64, sizeof length64, 0, "broadcast of the NCCL id's size");
  broadcast_bytes(id.data(), static_cast<size_t>(length64), 0, "broadcast of the NCCL id");
  b.comm_init(id.data(), static_cast<size_t>(length64), world_rank, world_size);
  device_comm_ready = true;
}

}  // namespace

// distInit(launcher: string, timeoutSeconds: number) -> { rank, size, library }. `launcher`
// names what showed mpirun (for the message when MPI cannot be loaded); empty: world size 1.
RT_BINDING(distInit) {
  Napi::Env env = info.Env();
  RT_EXPECT(info.Length() >= 2 && info[0].IsString(), "distInit: launcher must be a string", Error::type);
  const std::string launcher = info[0].As<Napi::String>().Utf8Value();
  const double timeout = number_arg(info, 1, "distInit", "timeoutSeconds");
  RT_EXPECT(timeout > 0 && timeout < 1e9, "distInit: timeoutSeconds must be in (0, 1e9), got " + std::to_string(timeout));
  timeout_seconds = timeout;
  if (!initialized && !launcher.empty()) {
    load_mpi(launcher);
    int provided = 0;
    const int code = mpi.init_thread(nullptr, nullptr, kThreadFunneled, &provided);
    if (code != 0) fail("data-parallel: MPI_Init_thread failed (" + launcher + "): error " + std::to_string(code));
    initialized = true;
    check(mpi.comm_set_errhandler(mpi.world, mpi.errors_return), "MPI_Comm_set_errhandler");
    check(mpi.comm_rank(mpi.world, &world_rank), "MPI_Comm_rank");
    check(mpi.comm_size(mpi.world, &world_size), "MPI_Comm_size");
    handle_terminate();
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("rank", world_rank);
  o.Set("size", world_size);
  o.Set("library", initialized ? library_name : std::string());
  return o;
}

// distAllreduceArray(data: Float32Array | Float64Array, op: "sum" | "max", what: string): in place.
RT_BINDING(distAllreduceArray) {
  require_initialized("distAllreduceArray");
  RT_EXPECT(info.Length() >= 3 && info[0].IsTypedArray() && info[1].IsString() && info[2].IsString(),
            "distAllreduceArray: expected (Float32Array | Float64Array, op, what)", Error::type);
  Napi::TypedArray array = info[0].As<Napi::TypedArray>();
  const napi_typedarray_type type = array.TypedArrayType();
  RT_EXPECT(type == napi_float32_array || type == napi_float64_array,
            "distAllreduceArray: data must be a Float32Array or Float64Array", Error::type);
  MpiHandle op = reduce_op(info[1].As<Napi::String>().Utf8Value(), "distAllreduceArray");
  const bool f64 = type == napi_float64_array;
  char* data = static_cast<char*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  allreduce_host(data, array.ElementLength(), f64 ? mpi.f64 : mpi.f32, f64 ? 8 : 4, op, info[2].As<Napi::String>().Utf8Value());
  return info.Env().Undefined();
}

// distAllreduceTensors(tensors: f32 tensors on one device, average: boolean, what: string): sums
// (or averages) them in place across ranks as one flat buffer, one collective for all of them.
// The flat buffer is kept for the next step (no allocation, no page faults per step).
RT_BINDING(distAllreduceTensors) {
  require_initialized("distAllreduceTensors");
  RT_EXPECT(info.Length() >= 3 && info[0].IsArray() && info[1].IsBoolean() && info[2].IsString(),
            "distAllreduceTensors: expected (tensors array, average, what)", Error::type);
  Napi::Array list = info[0].As<Napi::Array>();
  const bool average = info[1].As<Napi::Boolean>().Value();
  const std::string what = info[2].As<Napi::String>().Utf8Value();
  std::vector<NativeTensor*> tensors;
  size_t total = 0;
  for (uint32_t i = 0; i < list.Length(); ++i) {
    NativeTensor* t = optional_tensor_value(list.Get(i), "distAllreduceTensors", "tensors[i]");
    RT_EXPECT(t != nullptr, "distAllreduceTensors: tensors[" + std::to_string(i) + "] must be a tensor, got null", Error::type);
    expect_dtype(*t, DType::f32, "distAllreduceTensors", "tensors");
    if (!tensors.empty()) expect_same_device(*t, *tensors.front(), "distAllreduceTensors", "tensors");
    tensors.push_back(t);
    total += static_cast<size_t>(t->numel());
  }
  if (tensors.empty() || world_size == 1) return info.Env().Undefined();
  Backend& b = backend(tensors.front()->device());
  if (b.comm_allreduce_f32 != nullptr) {
    // Pack on the device, reduce with the device's collectives, unpack.
    ensure_device_comm(b);
    static void* device_flat = nullptr;
    static size_t device_flat_count = 0;
    if (device_flat_count < total) {
      if (device_flat != nullptr) b.release(device_flat);
      device_flat = nullptr;  // an allocation that fails leaves no dangling buffer
      device_flat_count = 0;
      device_flat = b.alloc(total * sizeof(float));
      device_flat_count = total;
    }
    float* flat = static_cast<float*>(device_flat);
    size_t at = 0;
    for (NativeTensor* t : tensors) {
      b.copy(flat + at, t->data("distAllreduceTensors", "tensors"), t->bytes());
      at += static_cast<size_t>(t->numel());
    }
    b.comm_allreduce_f32(flat, total, average);
    at = 0;
    for (NativeTensor* t : tensors) {
      b.copy(t->data("distAllreduceTensors", "tensors"), flat + at, t->bytes());
      at += static_cast<size_t>(t->numel());
    }
    return info.Env().Undefined();
  }
  static std::vector<float> flat;
  if (flat.size() < total) flat.resize(total);
  size_t at = 0;
  for (NativeTensor* t : tensors) {
    b.to_host(flat.data() + at, t->data("distAllreduceTensors", "tensors"), t->bytes());
    at += static_cast<size_t>(t->numel());
  }
  allreduce_host(flat.data(), total, mpi.f32, sizeof(float), mpi.sum, what);
  if (average) {
    const float scale = 1.0f / static_cast<float>(world_size);
    for (size_t i = 0; i < total; ++i) flat[i] *= scale;
  }
  at = 0;
  for (NativeTensor* t : tensors) {
    b.from_host(t->data("distAllreduceTensors", "tensors"), flat.data() + at, t->bytes());
    at += static_cast<size_t>(t->numel());
  }
  return info.Env().Undefined();
}

// distBroadcast(data: Uint8Array, root: number, what: string): in place.
RT_BINDING(distBroadcast) {
  require_initialized("distBroadcast");
  RT_EXPECT(info.Length() >= 3 && info[0].IsTypedArray() && info[2].IsString(), "distBroadcast: expected (Uint8Array, root, what)", Error::type);
  Napi::TypedArray array = info[0].As<Napi::TypedArray>();
  const int64_t root = int_arg(info, 1, "distBroadcast", "root");
  RT_EXPECT(root >= 0 && root < world_size, "distBroadcast: root must be a rank in [0, " + std::to_string(world_size) + "), got " + std::to_string(root));
  broadcast_bytes(static_cast<char*>(array.ArrayBuffer().Data()) + array.ByteOffset(), array.ByteLength(), static_cast<int>(root),
                  info[2].As<Napi::String>().Utf8Value());
  return info.Env().Undefined();
}

// distAllgather(data: Uint8Array, what: string) -> Uint8Array[] (one per rank, any lengths).
RT_BINDING(distAllgather) {
  require_initialized("distAllgather");
  RT_EXPECT(info.Length() >= 2 && info[0].IsTypedArray() && info[1].IsString(), "distAllgather: expected (Uint8Array, what)", Error::type);
  Napi::Env env = info.Env();
  Napi::TypedArray array = info[0].As<Napi::TypedArray>();
  const std::string what = info[1].As<Napi::String>().Utf8Value();
  const char* data = static_cast<const char*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  // Lengths first, then every rank's bytes padded to the longest.
  std::vector<double> lengths(static_cast<size_t>(world_size), 0.0);
  lengths[static_cast<size_t>(world_rank)] = static_cast<double>(array.ByteLength());
  allreduce_host(lengths.data(), lengths.size(), mpi.f64, sizeof(double), mpi.sum, what + " (lengths)");
  size_t longest = 0;
  for (double l : lengths) longest = std::max(longest, static_cast<size_t>(l));
  RT_EXPECT(longest < kMaxCount, "distAllgather: " + what + " is " + std::to_string(longest) + " bytes on some rank, expected < 2^30");
  std::vector<char> mine(longest, 0);
  std::memcpy(mine.data(), data, array.ByteLength());
  std::vector<char> all(longest * static_cast<size_t>(world_size));
  MpiHandle request = nullptr;
  check(mpi.iallgather(mine.data(), static_cast<int>(longest), mpi.byte, all.data(), static_cast<int>(longest), mpi.byte, mpi.world, &request), what);
  wait(request, what);
  Napi::Array out = Napi::Array::New(env, static_cast<size_t>(world_size));
  for (int r = 0; r < world_size; ++r) {
    const size_t length = static_cast<size_t>(lengths[static_cast<size_t>(r)]);
    Napi::Uint8Array bytes = Napi::Uint8Array::New(env, length);
    std::memcpy(bytes.Data(), all.data() + longest * static_cast<size_t>(r), length);
    out.Set(static_cast<uint32_t>(r), bytes);
  }
  return out;
}

// distBarrier(what: string)
RT_BINDING(distBarrier) {
  require_initialized("distBarrier");
  RT_EXPECT(info.Length() >= 1 && info[0].IsString(), "distBarrier: expected (what)", Error::type);
  const std::string what = info[0].As<Napi::String>().Utf8Value();
  MpiHandle request = nullptr;
  check(mpi.ibarrier(mpi.world, &request), what);
  wait(request, what);
  return info.Env().Undefined();
}

// distFinalize(): at a clean exit; a failing rank exits without it so the launcher ends the job.
RT_BINDING(distFinalize) {
  if (initialized && !finalized) {
    finalized = true;
    check(mpi.finalize(), "MPI_Finalize");
  }
  return info.Env().Undefined();
}

}  // namespace rt::napi
