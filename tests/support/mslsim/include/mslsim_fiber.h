// mslsim_fiber.h -- stackful fibers: the simulated GPU threads of one threadgroup.
//
// On x86-64 a hand-written switch saves only the callee-saved registers and the FP control
// words; swapcontext() is about 8x slower because it makes a sigprocmask syscall per switch,
// and a (64, 1024) softmax switches ~10^5 times. Elsewhere (aarch64 included) ucontext is used:
// slower but correct, and no untested assembly ships.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(MSLSIM_UCONTEXT) || !defined(__x86_64__)
#undef MSLSIM_UCONTEXT
#define MSLSIM_UCONTEXT 1
#include <ucontext.h>
#endif

namespace mslsim {

struct Fiber {
  void* sp = nullptr;  // saved stack pointer while suspended (assembly switch)
#ifdef MSLSIM_UCONTEXT
  ucontext_t uc;
#endif
};

typedef void (*FiberEntry)(void* arg);

}  // namespace mslsim

#ifndef MSLSIM_UCONTEXT
extern "C" void mslsim_fiber_switch(void** save_sp, void* new_sp);
extern "C" void mslsim_fiber_trampoline();
// mslsim_fiber_switch(&from->sp, to->sp): push callee-saved registers and MXCSR / x87 control
// word on the current stack, store rsp, load the other stack, pop the same frame, return into
// it. A new fiber's first frame returns into the trampoline, which calls entry(arg) with both
// taken from rbx / r12 of that frame. .hidden: every library carries its own copy.
asm(R"(
  .text
  .p2align 4
  .hidden mslsim_fiber_switch
  .globl mslsim_fiber_switch
  .type mslsim_fiber_switch,@function
mslsim_fiber_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size mslsim_fiber_switch, .-mslsim_fiber_switch

  .p2align 4
  .hidden mslsim_fiber_trampoline
  .globl mslsim_fiber_trampoline
  .type mslsim_fiber_trampoline,@function
mslsim_fiber_trampoline:
  movq %rbx, %rdi
  call *%r12
  ud2
  .size mslsim_fiber_trampoline, .-mslsim_fiber_trampoline
)");
#endif

namespace mslsim {

#ifdef MSLSIM_UCONTEXT
inline void fiber_uc_entry(unsigned fn_lo, unsigned fn_hi, unsigned arg_lo, unsigned arg_hi) {
  auto fn = reinterpret_cast<FiberEntry>((uintptr_t(fn_hi) << 32) | fn_lo);
  fn(reinterpret_cast<void*>((uintptr_t(arg_hi) << 32) | arg_lo));
}
#endif

// Prepare `f` to run entry(arg) on [stack, stack + size) at its first switch_to. `entry` must
// never return: it ends by switching away for good.
inline void fiber_init(Fiber* f, char* stack, size_t size, size_t colour, FiberEntry entry, void* arg) {
#ifdef MSLSIM_UCONTEXT
  (void)colour;
  getcontext(&f->uc);
  f->uc.uc_stack.ss_sp = stack;
  f->uc.uc_stack.ss_size = size;
  f->uc.uc_link = nullptr;
  const uintptr_t fn = reinterpret_cast<uintptr_t>(entry), a = reinterpret_cast<uintptr_t>(arg);
  makecontext(&f->uc, reinterpret_cast<void (*)()>(fiber_uc_entry), 4, unsigned(fn), unsigned(fn >> 32),
              unsigned(a), unsigned(a >> 32));
#else
  // Stacks are a fixed stride apart, so their tops would share cache sets: offset each one.
  const uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + size - colour) & ~uintptr_t(15);
  // The first switch pops this 64-byte frame and `ret`s into the trampoline with rsp == top - 16,
  // 16-byte aligned, so the trampoline's `call` meets the SysV alignment rule at a call site.
  uint64_t* sp = reinterpret_cast<uint64_t*>(top - 16 - 64);
  const uint32_t control[2] = {0x1F80u, 0x037Fu};  // default MXCSR, x87 control word
  std::memcpy(&sp[0], control, sizeof control);
  sp[1] = 0;                                      // r15
  sp[2] = 0;                                      // r14
  sp[3] = 0;                                      // r13
  sp[4] = reinterpret_cast<uint64_t>(entry);      // r12
  sp[5] = reinterpret_cast<uint64_t>(arg);        // rbx
  sp[6] = 0;                                      // rbp
  sp[7] = reinterpret_cast<uint64_t>(&mslsim_fiber_trampoline);
  f->sp = sp;
#endif
}

// Suspend `from` (the running context) and resume `to`.
inline void fiber_switch(Fiber* from, Fiber* to) {
#ifdef MSLSIM_UCONTEXT
  swapcontext(&from->uc, &to->uc);
#else
  mslsim_fiber_switch(&from->sp, to->sp);
#endif
}

}  // namespace mslsim
