/* A program that uses shmipc's named synchronization objects through the Win32 API
 * only, as any Windows program would: shmipc's name NAME is the object Local\NAME.
 *
 *   sync_peer.exe NAME
 *
 * 1. waits on the semaphore Local\NAME-sem (OpenSemaphoreW + WaitForSingleObject),
 * 2. locks the mutex Local\NAME-mutex (OpenMutexW + WaitForSingleObject),
 * 3. sets the event Local\NAME-event (OpenEventW + SetEvent), prints "locked",
 * 4. exits WITHOUT ReleaseMutex: the mutex is abandoned, and shmipc's next locker
 *    must get OwnerDied (WAIT_ABANDONED).
 * Every wait is bounded (10 s); any failure exits non-zero with a message.
 *
 * Build: x86_64-w64-mingw32-gcc -O2 -municode -o sync_peer.exe sync_peer.c */
#include <windows.h>
#include <stdio.h>

static HANDLE open_or_die(const wchar_t *what, HANDLE h) {
    if (h == NULL) {
        printf("cannot open %ls: error %lu\n", what, GetLastError());
        exit(2);
    }
    return h;
}

int wmain(int argc, wchar_t **argv) {
    wchar_t name[512];
    if (argc != 2) {
        printf("usage: sync_peer NAME\n");
        return 1;
    }
    swprintf(name, 512, L"Local\\%ls-sem", argv[1]);
    HANDLE sem = open_or_die(name, OpenSemaphoreW(SYNCHRONIZE, FALSE, name));
    swprintf(name, 512, L"Local\\%ls-mutex", argv[1]);
    HANDLE mutex = open_or_die(name, OpenMutexW(SYNCHRONIZE, FALSE, name));
    swprintf(name, 512, L"Local\\%ls-event", argv[1]);
    HANDLE event = open_or_die(name, OpenEventW(EVENT_MODIFY_STATE, FALSE, name));

    if (WaitForSingleObject(sem, 10000) != WAIT_OBJECT_0) {
        printf("no semaphore unit within 10 s\n");
        return 3;
    }
    DWORD r = WaitForSingleObject(mutex, 10000);
    if (r != WAIT_OBJECT_0) {
        printf("cannot lock the mutex: wait result %lu\n", r);
        return 4;
    }
    if (!SetEvent(event)) {
        printf("SetEvent failed: error %lu\n", GetLastError());
        return 5;
    }
    printf("locked\n");
    fflush(stdout);
    /* Exit holding the mutex: Windows marks it abandoned. */
    return 0;
}
