/* The seed's Process 1 in C: creates the paging-file section L"MyFileMapping" of
 * 1024 bytes, writes "Hello from Process 1" into it.
 *
 * One change from the seed: the seed closes its handle right after writing, which on
 * Windows removes the section before any reader can open it. This version prints
 * "ready" and keeps the section open until it reads a line on stdin, so a reader
 * (Process 2, or shmipc) can open it meanwhile.
 *
 * Build: x86_64-w64-mingw32-gcc -O2 -municode -o process1.exe process1.c */
#include <windows.h>
#include <stdio.h>
#include <string.h>

int wmain(void) {
    /* Create or open a file mapping object */
    HANDLE hFileMapping = CreateFileMappingW(
        INVALID_HANDLE_VALUE,   /* pagefile-backed section */
        NULL,                   /* default security attributes */
        PAGE_READWRITE,         /* protection */
        0,                      /* high-order DWORD of the size */
        1024,                   /* low-order DWORD of the size */
        L"MyFileMapping"        /* name */
    );
    if (hFileMapping == NULL) {
        printf("Error creating file mapping: %lu\n", GetLastError());
        return 1;
    }

    /* Map it into this process */
    LPVOID pMapView = MapViewOfFile(hFileMapping, FILE_MAP_WRITE, 0, 0, 1024);
    if (pMapView == NULL) {
        printf("Error mapping view of file: %lu\n", GetLastError());
        CloseHandle(hFileMapping);
        return 1;
    }

    /* Write data to the shared memory */
    char *pData = (char *)pMapView;
    strcpy_s(pData, 1024, "Hello from Process 1");

    /* Keep it alive until told to finish (see the header comment) */
    printf("ready\n");
    fflush(stdout);
    char line[64];
    (void)fgets(line, sizeof line, stdin);

    /* Unmap the view and close the file mapping object */
    UnmapViewOfFile(pMapView);
    CloseHandle(hFileMapping);
    return 0;
}
